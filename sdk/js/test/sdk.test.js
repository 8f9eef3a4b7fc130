// The SDK's checks, natively: what a session returns is checked as the
// component checks it before the host sees it.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Column, Extractor, OpenError, Param, ParamError, RowError, checkValues, kindOf } from "../index.js";
import { paramsSchema, parseParams } from "../params.js";
import { run } from "../testing.js";

const K = Param.uint("k", 10, 1, 100, "how many");
const FLAG = Param.boolean("flag", false, "a switch");
const MODE = Param.string("mode", "fast", ["fast", "exact"], "how");

test("parameters are checked and named", () => {
  assert.deepEqual(parseParams("", [K, FLAG, MODE]), { k: 10, flag: false, mode: "fast" });
  const cases = [
    ['{"k": 0}', "parameter `k`: must be between 1 and 100, got 0"],
    ['{"k": "x"}', "parameter `k`: expected an integer, got a string"],
    ['{"k": 1.5}', "parameter `k`: expected an integer, got a number"],
    ['{"flag": 1}', "parameter `flag`: expected a boolean, got a number"],
    ['{"mode": "slow"}', 'parameter `mode`: must be one of fast, exact, got "slow"'],
    ['{"other": 1, "also": 2}', "parameter `also`: unknown parameter (known: k, flag, mode)"],
  ];
  for (const [text, message] of cases) {
    assert.throws(() => parseParams(text, [K, FLAG, MODE]), (e) => e instanceof ParamError && e.message === message);
  }
  assert.throws(() => parseParams("[1]", []), (e) => e instanceof OpenError && /JSON object/.test(e.message));
  assert.throws(() => parseParams("{", []), /not valid JSON/);
  assert.throws(() => Param.uint("bad", 0, 1, 2, "default out of range"), RangeError);
});

test("the schema matches the checks", () => {
  const schema = paramsSchema([K, MODE]);
  assert.equal(schema.additionalProperties, false);
  assert.deepEqual(schema.properties.k, { type: "integer", minimum: 1, maximum: 100, default: 10, description: "how many" });
  assert.deepEqual(schema.properties.mode.enum, ["fast", "exact"]);
});

test("types map to kinds or are refused", () => {
  assert.deepEqual(kindOf("Utf8"), ["strings", null, "Utf8"]);
  assert.deepEqual(kindOf("FixedSizeList(64 x Float32)"), ["float-lists", 64, "Float32"]);
  assert.deepEqual(kindOf("LargeList(Int16)"), ["integer-lists", null, "Int16"]);
  assert.deepEqual(kindOf("List(non-null Int32)"), ["integer-lists", null, "Int32"]);
  assert.deepEqual(kindOf("FixedSizeList(3 x non-null Float32, field: 'v')"), ["float-lists", 3, "Float32"]);
  for (const bad of ["Struct(a Int32)", "List(Boolean)", "Date32", "utf8"]) {
    assert.throws(() => kindOf(bad), /cannot cross/);
  }
});

test("values are checked by row", () => {
  const col = (t) => new Column("c", t, "");
  assert.deepEqual(checkValues(col("Int8"), [1, null], 2), [1n, undefined]);
  const cases = [
    [col("Int8"), [128], /row 0: 128 does not fit Int8/],
    [col("UInt32"), [-1], /-1 does not fit UInt32/],
    [col("Int64"), [1.5], /expected an integer/],
    [col("Utf8"), [null, 3], /row 1: expected a string/],
    [col("FixedSizeList(2 x Float32)"), [[1]], /expected a list of 2 values, got 1/],
    [col("List(Utf8)"), [["a", 1]], /expected a list of strings/],
    [col("Binary"), ["x"], /expected a Uint8Array/],
  ];
  for (const [column, values, message] of cases) {
    assert.throws(() => checkValues(column, values, values.length), message);
  }
  assert.throws(() => checkValues(col("Utf8"), ["a"], 2), /1 values for 2 rows/);
});

class Lengths extends Extractor {
  static name = "lengths";
  static version = "0.1.0";
  static description = "lengths of keys";
  static inputs = ["key"];
  static outputs = [new Column("n", "UInt32", "length"), new Column("tags", "List(Utf8)", "tags")];
  static params = [K];

  open(params) {
    this.k = params.k;
  }

  processRow(row) {
    if (row.key === "bad") throw new RowError("a bad key");
    if (row.key === "boom") throw new TypeError("a bug");
    return { n: Math.min(row.key.length, this.k), tags: ["x"] };
  }
}

test("rows fail alone and bugs fail the call", () => {
  assert.deepEqual(run(Lengths, { k: 3 }, { key: ["ab", "bad", "abcdef"] }), [
    { n: 2, tags: ["x"] },
    { n: null, tags: null, _error: "a bad key" },
    { n: 3, tags: ["x"] },
  ]);
  assert.throws(() => run(Lengths, {}, { key: ["boom"] }), /a bug/);
  assert.throws(() => run(Lengths, {}, { other: ["a"] }), /input `key` is missing/);
});

test("a session that returns garbage is told what is wrong", () => {
  class Garbage extends Lengths {
    process(rows) {
      return [{ n: new Array(rows).fill("three") }, new Map()];
    }
  }
  assert.throws(() => run(Garbage, {}, { key: ["a"] }), /column `n`, row 0: expected an integer/);
  class Undeclared extends Lengths {
    process(rows) {
      return [{ n: [1], extra: [1] }, new Map()];
    }
  }
  assert.throws(() => run(Undeclared, {}, { key: ["a"] }), /undeclared column `extra`/);
  class BadRow extends Lengths {
    process() {
      return [{ n: [1] }, new Map([[5, "no"]])];
    }
  }
  assert.throws(() => run(BadRow, {}, { key: ["a"] }), /error for row 5 of 1/);
});

test("the manifest is what the host reads", () => {
  const m = Lengths.manifest();
  assert.equal(m.name, "lengths");
  assert.equal(m.outputs[1].dataType, "List(Utf8)");
  assert.equal(JSON.parse(m.paramsSchema).properties.k.default, 10);
  assert.equal(m.batchSize, 256);
  assert.equal(m.memoryLimitMb, 128);
});
