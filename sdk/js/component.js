// The component side: `columnar(Extractor)` is the `strata:extractor/columnar`
// export of a component built with `jco componentize`.

import { log as hostLog } from "strata:extractor/host@0.1.1";
import { OpenError, ParamError } from "./params.js";
import { kindOf, runSession } from "./index.js";

/** Writes one log line through the host (trace, debug, info, warn, error). */
export function log(level, message) {
  hostLog(level, String(message));
}

// Inputs arrive with integers as BigInts and lists of numbers as typed
// arrays: authors get Numbers where they are exact (BigInts beyond) and
// plain Arrays; bytes are Uint8Arrays, whatever array the bindings made.
function fromWit({ tag, val }) {
  const plain = (v) =>
    typeof v === "bigint" ? (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v)
      : Array.isArray(v) || ArrayBuffer.isView(v) ? Array.from(v, plain)
        : v === undefined ? null : v;
  if (tag === "binaries") return val.map((v) => (v === undefined || v === null ? null : v instanceof Uint8Array ? v : Uint8Array.from(v)));
  return val.map(plain);
}

// Lists of numbers are lowered from typed arrays.
function toWit(kind, values) {
  if (kind === "integer-lists") return values.map((v) => (v === undefined ? v : BigInt64Array.from(v)));
  if (kind === "float-lists") return values.map((v) => (v === undefined ? v : Float64Array.from(v)));
  return values;
}

/** The `columnar` export for `extractor`, a subclass of `Extractor`. */
export function columnar(extractor) {
  class Session {
    constructor(inner) {
      this.inner = inner;
    }

    columns() {
      return this.inner.columns().map((c) => ({ name: c.name, dataType: c.dataType, nullable: c.nullable, description: c.description }));
    }

    process(rows, inputs) {
      const columns = Object.fromEntries(inputs.map((named) => [named.name, fromWit(named.values)]));
      try {
        const [out, errors] = runSession(this.inner, rows, columns);
        return {
          columns: this.inner.columns().map((c) => {
            const kind = kindOf(c.dataType)[0];
            return { name: c.name, values: { tag: kind, val: toWit(kind, out[c.name]) } };
          }),
          errors: [...errors.entries()].sort((a, b) => a[0] - b[0]).map(([row, message]) => ({ row, message: String(message) })),
        };
      } catch (e) {
        // The whole call fails, with the reason; the host goes on.
        throw `${e?.name ?? "Error"}: ${e?.message ?? e}`;
      }
    }
  }

  return {
    Session,
    describe() {
      return extractor.manifest();
    },
    open(params) {
      try {
        return new Session(extractor.start(params));
      } catch (e) {
        if (e instanceof ParamError) throw { tag: "invalid-param", val: { param: e.param, message: e.detail } };
        if (e instanceof OpenError) throw { tag: "other", val: e.message };
        throw { tag: "other", val: `${e?.name ?? "Error"}: ${e?.message ?? e}` };
      }
    },
  };
}
