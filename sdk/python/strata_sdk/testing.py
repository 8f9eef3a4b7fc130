"""Runs an extractor natively, as its component would run it, for unit
tests with plain ``python -m pytest``: no component is built."""

from __future__ import annotations

import json
from typing import Any

from .extractor import Extractor, run_session


def run(extractor: type[Extractor], params: dict | str | None, columns: dict[str, list]) -> list[dict]:
    """Opens a session of ``extractor`` with ``params`` and processes
    ``columns`` (``{input name: [value per row]}``) in one call, as the
    component does; returns one dict per row: the outputs by name, and
    ``_error`` for a row that failed."""
    text = params if isinstance(params, str) else json.dumps(params or {})
    session = extractor.start(text)
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"input columns of different lengths: {sorted(lengths)}")
    rows = lengths.pop() if lengths else 0
    missing = [i for i in extractor.inputs if i not in columns]
    if missing:
        raise ValueError(f"input `{missing[0]}` is missing (the manifest reads {list(extractor.inputs)})")
    out, errors = run_session(session, rows, {k: list(v) for k, v in columns.items()})
    result: list[dict[str, Any]] = []
    for row in range(rows):
        values = {name: out[name][row] for name in out}
        if row in errors:
            values = {name: None for name in out}
            values["_error"] = errors[row]
        result.append(values)
    return result


__all__ = ["run"]
