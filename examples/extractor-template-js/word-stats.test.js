// Unit tests, run natively with `node --test`: no component is built.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ParamError } from "strata-sdk";
import { run } from "strata-sdk/testing";
import { WordStats } from "./word-stats.js";

test("counts words and sentences", () => {
  const rows = run(WordStats, {}, { "text-extract.text": ["One two three. Four!", "", null] });
  assert.deepEqual(rows[0], { words: 4, sentences: 2, avg_word_chars: 3.75 });
  assert.deepEqual(rows[1], { words: 0, sentences: 0, avg_word_chars: 0 });
  assert.equal(rows[2]._error, "no text");
});

test("short words are skipped", () => {
  const rows = run(WordStats, { min_word_chars: 4 }, { "text-extract.text": ["a bb cccc ddddd"] });
  assert.equal(rows[0].words, 2);
});

test("bad parameters are named", () => {
  assert.throws(() => run(WordStats, { min_word_chars: 0 }, { "text-extract.text": [] }), ParamError);
  assert.throws(() => run(WordStats, { min_chars: 2 }, { "text-extract.text": [] }), /unknown parameter/);
});
