"""The component's entry point: names the extractor it exports."""

from readability import Readability
from strata_sdk.component import Columnar, export  # noqa: F401 (componentize-py looks here)

export(Readability)
