"""`word-stats-py`: words, sentences and average word length of the text
that `text-extract` produced. Copy this folder to start your own extractor."""

from strata_sdk import Column, Extractor, Param, RowError


class WordStats(Extractor):
    # The manifest: what the extractor is, reads and produces. The host
    # checks it when the component is loaded and names any bad field.
    name = "word-stats-py"
    version = "0.1.0"
    description = "Words, sentences and average word length of a text"
    # Read another extractor's output: depend on it, then name its column
    # as `extractor.column`.
    depends_on = ["text-extract"]
    inputs = ["text-extract.text"]
    outputs = [
        Column("words", "UInt32", "number of words"),
        Column("sentences", "UInt32", "number of sentences"),
        Column("avg_word_chars", "Float32", "average characters per word"),
    ]
    # Declared once: the manifest's JSON Schema and the checks made when a
    # session opens both come from these.
    params = [Param.uint("min_word_chars", 1, 1, 100, "shorter words are not counted")]
    batch_size = 256
    memory_limit_mb = 128

    def open(self, params):
        # `params` holds every declared parameter, checked, defaults filled in.
        self.min_word_chars = params["min_word_chars"]

    def process_row(self, row):
        # One row in, one row out; a row that fails gets nulls and an error
        # message, and the other rows carry on.
        text = row["text-extract.text"]
        if text is None:
            raise RowError("no text")
        counted = [len(w) for w in _words(text) if len(w) >= self.min_word_chars]
        ends = sum(text.count(c) for c in ".!?")
        return {
            "words": len(counted),
            "sentences": max(ends, 1 if counted else 0),
            "avg_word_chars": sum(counted) / len(counted) if counted else 0.0,
        }


def _words(text):
    word = []
    for c in text:
        if c.isalnum():
            word.append(c)
        elif word:
            yield "".join(word)
            word = []
    if word:
        yield "".join(word)
