// Runs an extractor natively, as its component would run it, for unit
// tests with `node --test`: no component is built.

import { runSession } from "./index.js";

/** Opens a session of `extractor` with `params` and processes `columns` ({inputName: [value per row]}) in one call; returns one object per row, with `_error` for a row that failed. */
export function run(extractor, params, columns) {
  const text = typeof params === "string" ? params : JSON.stringify(params ?? {});
  const session = extractor.start(text);
  const lengths = new Set(Object.values(columns).map((v) => v.length));
  if (lengths.size > 1) throw new RangeError(`input columns of different lengths: ${[...lengths].join(", ")}`);
  const rows = lengths.size ? [...lengths][0] : 0;
  const missing = extractor.inputs.filter((i) => !Object.hasOwn(columns, i));
  if (missing.length) throw new RangeError(`input \`${missing[0]}\` is missing`);
  const [out, errors] = runSession(session, rows, columns);
  const plain = (v) => (typeof v === "bigint" ? Number(v) : Array.isArray(v) ? v.map(plain) : v ?? null);
  return Array.from({ length: rows }, (_, row) => {
    if (errors.has(row)) {
      return { ...Object.fromEntries(Object.keys(out).map((n) => [n, null])), _error: errors.get(row) };
    }
    return Object.fromEntries(Object.entries(out).map(([n, v]) => [n, plain(v[row])]));
  });
}
