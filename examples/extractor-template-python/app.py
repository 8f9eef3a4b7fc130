"""The component's entry point: names the extractor it exports."""

from strata_sdk.component import Columnar, export  # noqa: F401 (componentize-py looks here)
from word_stats import WordStats

export(WordStats)
