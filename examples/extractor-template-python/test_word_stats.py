"""Unit tests, run natively with `python -m pytest`: no component is built."""

import pytest

from strata_sdk import ParamError
from strata_sdk.testing import run
from word_stats import WordStats


def test_counts_words_and_sentences():
    rows = run(WordStats, {}, {"text-extract.text": ["One two three. Four!", "", None]})
    assert rows[0] == {"words": 4, "sentences": 2, "avg_word_chars": pytest.approx(3.75)}
    assert rows[1] == {"words": 0, "sentences": 0, "avg_word_chars": 0.0}
    assert rows[2]["_error"] == "no text"


def test_short_words_are_skipped():
    rows = run(WordStats, {"min_word_chars": 4}, {"text-extract.text": ["a bb cccc ddddd"]})
    assert rows[0]["words"] == 2


def test_bad_parameters_are_named():
    with pytest.raises(ParamError, match="min_word_chars"):
        run(WordStats, {"min_word_chars": 0}, {"text-extract.text": []})
    with pytest.raises(ParamError, match="unknown parameter"):
        run(WordStats, {"min_chars": 2}, {"text-extract.text": []})
