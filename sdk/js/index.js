// Write a Strata feature extractor in JavaScript: extend `Extractor`,
// declare the manifest as static fields, implement `processRow` (one row)
// or `process` (whole columns). `strata-sdk/testing` runs it natively for
// unit tests; `jco componentize` builds it as a component (see
// examples/extractor-template-js). No Arrow library is needed: the
// component exchanges columns with the host as WIT values (`columnar` in
// wit/extractor.wit).

import { OpenError, Param, ParamError, paramsSchema, parseParams } from "./params.js";

export { OpenError, Param, ParamError };

/** One output column: name (without the `extractor.` prefix), Arrow type in Arrow's textual form, and what it holds. */
export class Column {
  constructor(name, dataType, description, nullable = true) {
    Object.assign(this, { name, dataType, description, nullable });
    Object.freeze(this);
  }
}

/** Thrown by `processRow`: this row failed, the others go on. */
export class RowError extends Error {}

const INTEGERS = {
  Int8: [-(2n ** 7n), 2n ** 7n - 1n],
  Int16: [-(2n ** 15n), 2n ** 15n - 1n],
  Int32: [-(2n ** 31n), 2n ** 31n - 1n],
  Int64: [-(2n ** 63n), 2n ** 63n - 1n],
  UInt8: [0n, 2n ** 8n - 1n],
  UInt16: [0n, 2n ** 16n - 1n],
  UInt32: [0n, 2n ** 32n - 1n],
  UInt64: [0n, 2n ** 63n - 1n],
};
const FLOATS = new Set(["Float32", "Float64"]);
const SCALARS = {
  Boolean: "booleans",
  Utf8: "strings",
  LargeUtf8: "strings",
  Binary: "binaries",
  LargeBinary: "binaries",
  ...Object.fromEntries(Object.keys(INTEGERS).map((t) => [t, "integers"])),
  Float32: "floats",
  Float64: "floats",
};
// Arrow's textual form may name the item field's nullability and name.
const ITEM = String.raw`(?:non-null |nullable )?(\w+)(?:, field: '[^']*')?`;
const LIST = new RegExp(String.raw`^(List|LargeList)\(${ITEM}\)$`);
const FIXED = new RegExp(String.raw`^FixedSizeList\((\d+) x ${ITEM}\)$`);

/** The kind of values of `dataType` (as `values` in the WIT names them), a fixed list size or null, and the item type. */
export function kindOf(dataType) {
  if (Object.hasOwn(SCALARS, dataType)) return [SCALARS[dataType], null, dataType];
  let item, size = null;
  let m = LIST.exec(dataType);
  if (m) {
    item = m[2];
  } else if ((m = FIXED.exec(dataType))) {
    size = Number(m[1]);
    item = m[2];
  } else {
    throw new TypeError(unsupported(dataType));
  }
  if (Object.hasOwn(INTEGERS, item)) return ["integer-lists", size, item];
  if (FLOATS.has(item)) return ["float-lists", size, item];
  if (item === "Utf8") return ["string-lists", size, item];
  throw new TypeError(unsupported(dataType));
}

function unsupported(dataType) {
  return `${dataType} cannot cross the columnar interface (it carries booleans, integers, floats, strings, binary, and lists of integers, floats or strings)`;
}

/** `values` for `column`, checked to be one per row and of its type; integers become BigInts. Throws naming the column and row. */
export function checkValues(column, values, rows) {
  if (!Array.isArray(values)) throw new TypeError(`column \`${column.name}\`: expected an array of values`);
  if (values.length !== rows) throw new RangeError(`column \`${column.name}\`: ${values.length} values for ${rows} rows`);
  const [kind, size, item] = kindOf(column.dataType);
  return values.map((value, row) => {
    if (value === null || value === undefined) return undefined;
    try {
      return checkValue(kind, size, item, value);
    } catch (e) {
      e.message = `column \`${column.name}\`, row ${row}: ${e.message}`;
      throw e;
    }
  });
}

function checkValue(kind, size, item, value) {
  switch (kind) {
    case "booleans":
      if (typeof value !== "boolean") throw new TypeError(`expected a boolean, got ${typeof value}`);
      return value;
    case "integers":
      return integer(item, value);
    case "floats":
      return float(value);
    case "strings":
      if (typeof value !== "string") throw new TypeError(`expected a string, got ${typeof value}`);
      return value;
    case "binaries":
      if (!(value instanceof Uint8Array)) throw new TypeError(`expected a Uint8Array, got ${typeof value}`);
      return value;
  }
  if (!Array.isArray(value)) throw new TypeError(`expected an array, got ${typeof value}`);
  if (size !== null && value.length !== size) throw new RangeError(`expected a list of ${size} values, got ${value.length}`);
  if (kind === "integer-lists") return value.map((v) => integer(item, v));
  if (kind === "float-lists") return value.map(float);
  for (const v of value) {
    if (typeof v !== "string") throw new TypeError(`expected a list of strings, got a ${typeof v} in it`);
  }
  return value;
}

function integer(item, value) {
  let big;
  if (typeof value === "bigint") big = value;
  else if (Number.isInteger(value)) big = BigInt(value);
  else throw new TypeError(`expected an integer, got ${typeof value === "number" ? value : typeof value}`);
  const [low, high] = INTEGERS[item];
  if (big < low || big > high) throw new RangeError(`${big} does not fit ${item}`);
  return big;
}

function float(value) {
  if (typeof value !== "number") throw new TypeError(`expected a number, got ${typeof value}`);
  return value;
}

/** Extend this; one instance is one session, opened with its checked parameters. */
export class Extractor {
  static dependsOn = [];
  static inputs = [];
  static outputs = [];
  static params = [];
  static mimeTypes = [];
  static batchSize = 256;
  static memoryLimitMb = 128;

  /** The manifest as the host reads it (WIT field names, camel-cased). */
  static manifest() {
    for (const field of ["name", "version", "description"]) {
      if (typeof this[field] !== "string") throw new TypeError(`${this.name ?? "extractor"}.${field} must be a string`);
    }
    for (const column of this.outputs) kindOf(column.dataType);
    return {
      name: this.name,
      version: this.version,
      description: this.description,
      dependsOn: [...(this.dependsOn ?? [])],
      inputs: [...this.inputs],
      outputs: this.outputs.map((c) => ({ name: c.name, dataType: c.dataType, nullable: c.nullable, description: c.description })),
      paramsSchema: JSON.stringify(paramsSchema(this.params)),
      mimeTypes: [...this.mimeTypes],
      batchSize: this.batchSize,
      memoryLimitMb: this.memoryLimitMb,
    };
  }

  /** A session: a new instance, opened with the parameters in `paramsJson` once checked. */
  static start(paramsJson) {
    const session = new this();
    session.open(parseParams(paramsJson, this.params));
    return session;
  }

  /** Configures this session; throw `ParamError` or `OpenError` to refuse. */
  open(_params) {}

  /** The concrete output columns of this configuration. */
  columns() {
    return this.constructor.outputs;
  }

  /** Processes `rows` rows given as `{inputName: values}`; returns `[{outputName: values}, Map(row → message)]`. */
  process(rows, columns) {
    const names = this.columns().map((c) => c.name);
    const out = Object.fromEntries(names.map((n) => [n, new Array(rows).fill(null)]));
    const errors = new Map();
    for (let row = 0; row < rows; row++) {
      const input = Object.fromEntries(Object.entries(columns).map(([k, v]) => [k, v[row]]));
      let result;
      try {
        result = this.processRow(input);
      } catch (e) {
        if (!(e instanceof RowError)) throw e;
        errors.set(row, e.message || "row failed");
        continue;
      }
      if (result === null || typeof result !== "object") throw new TypeError("processRow must return an object");
      for (const [name, value] of Object.entries(result)) {
        if (!Object.hasOwn(out, name)) throw new RangeError(`processRow returned undeclared column \`${name}\``);
        out[name][row] = value;
      }
    }
    return [out, errors];
  }

  /** Processes one row `{inputName: value}`; returns `{outputName: value}`. Throw `RowError` to fail this row only. */
  processRow(_row) {
    throw new Error(`${this.constructor.name} implements neither process nor processRow`);
  }
}

/** One call of `session`, its output checked against its columns as the component checks it. */
export function runSession(session, rows, columns) {
  const [out, errors] = session.process(rows, columns);
  const declared = session.columns();
  if (out === null || typeof out !== "object") throw new TypeError("process must return an object of columns");
  const unknown = Object.keys(out).filter((n) => !declared.some((c) => c.name === n)).sort();
  if (unknown.length) throw new RangeError(`process returned undeclared column \`${unknown[0]}\``);
  const checked = Object.fromEntries(
    declared.map((c) => [c.name, checkValues(c, out[c.name] ?? new Array(rows).fill(null), rows)]),
  );
  for (const row of errors.keys()) {
    if (!Number.isInteger(row) || row < 0 || row >= rows) throw new RangeError(`process returned an error for row ${row} of ${rows}`);
  }
  return [checked, errors];
}
