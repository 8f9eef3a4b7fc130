"""`readability`: sentences, words, syllables and the Flesch reading-ease
and Flesch–Kincaid grade of the text `text-extract` produced (English
syllable rules; other languages get rough figures)."""

import re

from strata_sdk import Column, Extractor

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_VOWELS = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    """English syllables of `word`, by vowel groups: a final silent `e`
    does not count (but `-le` and `-ee` do), and every word has one."""
    w = word.lower()
    count = len(_VOWELS.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee")) and count > 1:
        count -= 1
    return max(count, 1)


class Readability(Extractor):
    name = "readability"
    version = "1.0.0"
    description = "Sentences, words, syllables, Flesch reading ease and Flesch-Kincaid grade of a text"
    depends_on = ["text-extract"]
    inputs = ["text-extract.text"]
    outputs = [
        Column("sentences", "UInt32", "sentences (ending in . ! or ?, or the end of the text)"),
        Column("words", "UInt32", "words (letters, with inner apostrophes)"),
        Column("syllables", "UInt32", "syllables, by English vowel groups"),
        Column("flesch_reading_ease", "Float32", "206.835 - 1.015 words/sentence - 84.6 syllables/word; null without words"),
        Column("flesch_kincaid_grade", "Float32", "0.39 words/sentence + 11.8 syllables/word - 15.59; null without words"),
    ]
    mime_types = []
    batch_size = 256
    memory_limit_mb = 128

    def process_row(self, row):
        text = (row["text-extract.text"] or "").rstrip()
        words = _WORD.findall(text)
        # Sentence ends, and the end of a text that does not end with one.
        sentences = len(_SENTENCE_END.findall(text)) + (text[-1:] not in ("", ".", "!", "?"))
        sentences = max(sentences, 1) if words else 0
        syl = sum(syllables(w) for w in words)
        out = {"sentences": sentences, "words": len(words), "syllables": syl}
        if words:
            wps, spw = len(words) / sentences, syl / len(words)
            out["flesch_reading_ease"] = 206.835 - 1.015 * wps - 84.6 * spw
            out["flesch_kincaid_grade"] = 0.39 * wps + 11.8 * spw - 15.59
        return out
