// `word-stats-js`: words, sentences and average word length of the text
// that `text-extract` produced. Copy this folder to start your own extractor.

import { Column, Extractor, Param, RowError } from "strata-sdk";

export class WordStats extends Extractor {
  // The manifest: what the extractor is, reads and produces. The host
  // checks it when the component is loaded and names any bad field.
  static name = "word-stats-js";
  static version = "0.1.0";
  static description = "Words, sentences and average word length of a text";
  // Read another extractor's output: depend on it, then name its column
  // as `extractor.column`.
  static dependsOn = ["text-extract"];
  static inputs = ["text-extract.text"];
  static outputs = [
    new Column("words", "UInt32", "number of words"),
    new Column("sentences", "UInt32", "number of sentences"),
    new Column("avg_word_chars", "Float32", "average characters per word"),
  ];
  // Declared once: the manifest's JSON Schema and the checks made when a
  // session opens both come from these.
  static params = [Param.uint("min_word_chars", 1, 1, 100, "shorter words are not counted")];
  static batchSize = 256;
  static memoryLimitMb = 128;

  open(params) {
    // `params` holds every declared parameter, checked, defaults filled in.
    this.minWordChars = params.min_word_chars;
  }

  processRow(row) {
    // One row in, one row out; a row that fails gets nulls and an error
    // message, and the other rows carry on.
    const text = row["text-extract.text"];
    if (text === null) throw new RowError("no text");
    const counted = words(text)
      .map((w) => [...w].length)
      .filter((n) => n >= this.minWordChars);
    let ends = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 46 || c === 33 || c === 63) ends++; // . ! ?
    }
    return {
      words: counted.length,
      sentences: Math.max(ends, counted.length ? 1 : 0),
      avg_word_chars: counted.length ? counted.reduce((a, b) => a + b, 0) / counted.length : 0,
    };
  }
}

// Letters (anything with case, kana, CJK ideographs, Hangul) and digits
// make words. Plain comparisons, not regular expressions: the engine inside
// the component interprets JavaScript, and has no `\p{L}`.
function isWordChar(c) {
  const code = c.codePointAt(0);
  if (code < 128) return (code >= 48 && code <= 57) || ((code | 32) >= 97 && (code | 32) <= 122);
  return (
    (code >= 0x3040 && code <= 0x30ff) ||
    (code >= 0x4e00 && code <= 0x9fff) ||
    (code >= 0xac00 && code <= 0xd7af) ||
    c.toLowerCase() !== c.toUpperCase()
  );
}

function words(text) {
  const found = [];
  let start = -1;
  let i = 0;
  for (const c of text) {
    if (isWordChar(c)) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      found.push(text.slice(start, i));
      start = -1;
    }
    i += c.length;
  }
  if (start >= 0) found.push(text.slice(start));
  return found;
}
