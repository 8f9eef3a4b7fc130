"""Extractors: a manifest declared on a class, sessions that process
columns (or rows), and the checks both the component and a native run
make on what a session returns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from .params import OpenError, Param, params_schema, parse_params


@dataclass(frozen=True)
class Column:
    """One output column: its name (without the ``extractor.`` prefix),
    its Arrow type in Arrow's textual form (``Utf8``, ``Int32``,
    ``Float32``, ``List(Utf8)``, ``FixedSizeList(64 x Float32)``) and what it
    holds, for people."""

    name: str
    data_type: str
    description: str
    nullable: bool = True


class RowError(Exception):
    """Raised by :meth:`Extractor.process_row`: this row failed, the
    others go on."""


# The kinds of values a column's type crosses the component boundary as
# (`values` in `wit/extractor.wit`), by Arrow type.
_INTEGERS = {"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"}
_FLOATS = {"Float32", "Float64"}
_SCALARS = {
    "Boolean": "booleans",
    "Utf8": "strings",
    "LargeUtf8": "strings",
    "Binary": "binaries",
    "LargeBinary": "binaries",
    **{t: "integers" for t in _INTEGERS},
    **{t: "floats" for t in _FLOATS},
}
# Arrow's textual form may name the item field's nullability and name.
_ITEM = r"(?:non-null |nullable )?(\w+)(?:, field: '[^']*')?"
_LIST = re.compile(rf"^(List|LargeList)\({_ITEM}\)$")
_FIXED = re.compile(rf"^FixedSizeList\((\d+) x {_ITEM}\)$")

_S64 = (-(2**63), 2**63 - 1)
_INTEGER_RANGES = {
    "Int8": (-(2**7), 2**7 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "Int64": _S64,
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, _S64[1]),
}


def kind_of(data_type: str) -> tuple[str, int | None, str]:
    """The kind of values of ``data_type``, a fixed list size (or ``None``)
    and the item type (the type itself for scalars). Raises ``ValueError``
    for a type the boundary does not carry."""
    if data_type in _SCALARS:
        return _SCALARS[data_type], None, data_type
    m = _LIST.match(data_type)
    size = None
    if m:
        item = m.group(2)
    else:
        m = _FIXED.match(data_type)
        if not m:
            raise ValueError(_unsupported(data_type))
        size, item = int(m.group(1)), m.group(2)
    if item in _INTEGERS:
        return "integer-lists", size, item
    if item in _FLOATS:
        return "float-lists", size, item
    if item == "Utf8":
        return "string-lists", size, item
    raise ValueError(_unsupported(data_type))


def _unsupported(data_type: str) -> str:
    return (
        f"{data_type} cannot cross the columnar interface (it carries booleans, integers, "
        "floats, strings, binary, and lists of integers, floats or strings)"
    )


def check_values(column: Column, values: Sequence[Any], rows: int) -> list:
    """``values`` for ``column``, checked to be one per row and of the
    column's type (ints for floats become floats); raises ``TypeError`` or
    ``ValueError`` naming the column and row."""
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"column `{column.name}`: expected a list of values, got {type(values).__name__}")
    if len(values) != rows:
        raise ValueError(f"column `{column.name}`: {len(values)} values for {rows} rows")
    kind, size, item = kind_of(column.data_type)
    checked = []
    for row, value in enumerate(values):
        if value is None:
            checked.append(None)
            continue
        try:
            checked.append(_check_value(kind, size, item, value))
        except (TypeError, ValueError) as e:
            raise type(e)(f"column `{column.name}`, row {row}: {e}") from None
    return checked


def _check_value(kind: str, size: int | None, item: str, value: Any) -> Any:
    if kind == "booleans":
        if not isinstance(value, bool):
            raise TypeError(f"expected a boolean, got {type(value).__name__}")
        return value
    if kind == "integers":
        return _integer(item, value)
    if kind == "floats":
        return _float(value)
    if kind == "strings":
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {type(value).__name__}")
        return value
    if kind == "binaries":
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"expected bytes, got {type(value).__name__}")
        return bytes(value)
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise ValueError(f"expected a list of {size} values, got {len(value)}")
    if kind == "integer-lists":
        return [_integer(item, v) for v in value]
    if kind == "float-lists":
        return [_float(v) for v in value]
    for v in value:
        if not isinstance(v, str):
            raise TypeError(f"expected a list of strings, got a {type(v).__name__} in it")
    return list(value)


def _integer(item: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    low, high = _INTEGER_RANGES[item]
    if not low <= value <= high:
        raise ValueError(f"{value} does not fit {item}")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


class Extractor:
    """Subclass this, declare the manifest as class attributes, and
    implement :meth:`process_row` (one row at a time) or :meth:`process`
    (whole columns). One instance is one session: :meth:`open` gets its
    checked parameters.

    Inputs arrive by the names the manifest gives them (``content``,
    ``mime_type``, ``text-extract.text``): bytes for binary columns, str for
    text, int, float, bool, lists of those, or ``None`` for a null.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str]
    depends_on: ClassVar[Sequence[str]] = ()
    inputs: ClassVar[Sequence[str]] = ()
    outputs: ClassVar[Sequence[Column]] = ()
    params: ClassVar[Sequence[Param]] = ()
    mime_types: ClassVar[Sequence[str]] = ()
    batch_size: ClassVar[int] = 256
    memory_limit_mb: ClassVar[int] = 128

    @classmethod
    def manifest(cls) -> dict:
        """The manifest as the host reads it."""
        for field in ("name", "version", "description"):
            if not isinstance(getattr(cls, field, None), str):
                raise TypeError(f"{cls.__name__}.{field} must be a string")
        for column in cls.outputs:
            kind_of(column.data_type)
        return {
            "name": cls.name,
            "version": cls.version,
            "description": cls.description,
            "depends_on": list(cls.depends_on),
            "inputs": list(cls.inputs),
            "outputs": list(cls.outputs),
            "params_schema": params_schema(cls.params),
            "mime_types": list(cls.mime_types),
            "batch_size": int(cls.batch_size),
            "memory_limit_mb": int(cls.memory_limit_mb),
        }

    @classmethod
    def start(cls, params_json: str) -> "Extractor":
        """A session: a new instance, opened with the parameters in
        ``params_json`` once they are checked against ``params``."""
        session = cls()
        session.open(parse_params(params_json, cls.params))
        return session

    def open(self, params: dict) -> None:
        """Configures this session; ``params`` holds every declared
        parameter, checked, defaults filled in. Raise :class:`ParamError`
        or :class:`OpenError` to refuse."""

    def columns(self) -> Sequence[Column]:
        """The concrete output columns of this configuration (the same
        names as ``outputs``; a fixed-size list's size may differ)."""
        return self.outputs

    def process(self, rows: int, columns: dict) -> tuple[dict, dict]:
        """Processes ``rows`` rows given as ``{input name: values}``; returns
        ``({output name: values}, {row: error message})``. By default calls
        :meth:`process_row` for each row."""
        names = [c.name for c in self.columns()]
        out: dict = {n: [None] * rows for n in names}
        errors: dict = {}
        for row in range(rows):
            try:
                result = self.process_row({k: v[row] for k, v in columns.items()})
            except RowError as e:
                errors[row] = str(e) or "row failed"
                continue
            if not isinstance(result, dict):
                raise TypeError(f"process_row returned {type(result).__name__}, expected a dict")
            for name, value in result.items():
                if name not in out:
                    raise ValueError(f"process_row returned undeclared column `{name}`")
                out[name][row] = value
        return out, errors

    def process_row(self, row: dict) -> dict:
        """Processes one row, ``{input name: value}``; returns
        ``{output name: value}`` (a missing output is null). Raise
        :class:`RowError` to fail this row only."""
        raise NotImplementedError(f"{type(self).__name__} implements neither process nor process_row")


def run_session(session: Extractor, rows: int, columns: dict) -> tuple[dict, dict]:
    """One call of ``session``, its output checked against its columns as
    the component checks it before returning it to the host."""
    out, errors = session.process(rows, columns)
    declared = list(session.columns())
    if not isinstance(out, dict):
        raise TypeError(f"process returned {type(out).__name__}, expected a dict of columns")
    unknown = sorted(set(out) - {c.name for c in declared})
    if unknown:
        raise ValueError(f"process returned undeclared column `{unknown[0]}`")
    checked = {c.name: check_values(c, out.get(c.name, [None] * rows), rows) for c in declared}
    bad_rows = [r for r in errors if not isinstance(r, int) or not 0 <= r < rows]
    if bad_rows:
        raise ValueError(f"process returned an error for row {bad_rows[0]!r} of {rows}")
    return checked, {r: str(m) for r, m in errors.items()}


__all__ = ["Column", "Extractor", "OpenError", "RowError", "kind_of", "run_session"]
