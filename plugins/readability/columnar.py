"""Where componentize-py looks for the exported `session` resource."""

from strata_sdk.component import Session  # noqa: F401
