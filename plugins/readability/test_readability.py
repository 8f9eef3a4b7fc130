"""Unit tests, run natively with `python -m pytest`."""

import pytest

from readability import syllables
from readability import Readability
from strata_sdk.testing import run


def test_syllables_follow_english_vowel_groups():
    cases = {"the": 1, "make": 1, "table": 2, "free": 1, "reading": 2, "beautiful": 3, "rhythm": 1, "a": 1}
    assert {w: syllables(w) for w in cases} == cases


def test_flesch_scores_of_a_known_text():
    text = "The cat sat on the mat. It was happy!"
    [row] = run(Readability, {}, {"text-extract.text": [text]})
    assert row["sentences"] == 2
    assert row["words"] == 9
    assert row["syllables"] == 10
    assert row["flesch_reading_ease"] == pytest.approx(206.835 - 1.015 * 4.5 - 84.6 * 10 / 9, rel=1e-6)
    assert row["flesch_kincaid_grade"] == pytest.approx(0.39 * 4.5 + 11.8 * 10 / 9 - 15.59, rel=1e-6)


def test_texts_without_words_have_no_scores():
    rows = run(Readability, {}, {"text-extract.text": ["", "1234 ...", None, "No end"]})
    assert rows[0] == {"sentences": 0, "words": 0, "syllables": 0, "flesch_reading_ease": None, "flesch_kincaid_grade": None}
    assert rows[1]["words"] == 0
    assert rows[2]["words"] == 0
    assert rows[3]["sentences"] == 1
