"""The component side: implements ``strata:extractor/columnar`` for the
extractor class an app module names with :func:`export`.

Imported only inside the component, where ``componentize-py`` generates the
``wit_world`` bindings. An app module (``app.py``) and a ``columnar``
module re-export :class:`Columnar` and :class:`Session`, which is where
``componentize-py`` looks for an exported interface and its resource.
"""

from __future__ import annotations

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import columnar as wit
from wit_world.imports import host, types

from .extractor import Column, Extractor, kind_of, run_session
from .params import OpenError, ParamError

_exported: type[Extractor] | None = None


def export(extractor: type[Extractor]) -> type[Extractor]:
    """Names the extractor class this component exports."""
    global _exported
    _exported = extractor
    return extractor


def _extractor() -> type[Extractor]:
    if _exported is None:
        raise RuntimeError("no extractor exported: call strata_sdk.component.export(YourExtractor) in app.py")
    return _exported


def host_log(level: str, message: str) -> None:
    """Writes one line through the host's log."""
    host.log(types.LogLevel[level.upper()], message)


def _column(column: Column) -> types.Column:
    return types.Column(
        name=column.name,
        data_type=column.data_type,
        nullable=column.nullable,
        description=column.description,
    )


_VALUES = {
    "booleans": wit.Values_Booleans,
    "integers": wit.Values_Integers,
    "floats": wit.Values_Floats,
    "strings": wit.Values_Strings,
    "binaries": wit.Values_Binaries,
    "integer-lists": wit.Values_IntegerLists,
    "float-lists": wit.Values_FloatLists,
    "string-lists": wit.Values_StringLists,
}


class Columnar(exports.Columnar):
    """The exported interface: describe and open."""

    def describe(self) -> types.Manifest:
        m = _extractor().manifest()
        return types.Manifest(
            name=m["name"],
            version=m["version"],
            description=m["description"],
            depends_on=m["depends_on"],
            inputs=m["inputs"],
            outputs=[_column(c) for c in m["outputs"]],
            params_schema=json.dumps(m["params_schema"]),
            mime_types=m["mime_types"],
            batch_size=m["batch_size"],
            memory_limit_mb=m["memory_limit_mb"],
        )

    def open(self, params: str) -> "Session":
        try:
            return Session(_extractor().start(params))
        except ParamError as e:
            raise Err(types.OpenError_InvalidParam(types.ParamError(param=e.param, message=e.message)))
        except OpenError as e:
            raise Err(types.OpenError_Other(str(e)))


class Session(wit.Session):
    """The exported resource: one configured extractor."""

    def __init__(self, inner: Extractor) -> None:
        self.inner = inner

    def columns(self) -> list[types.Column]:
        return [_column(c) for c in self.inner.columns()]

    def process(self, rows: int, inputs: list[wit.NamedValues]) -> wit.Output:
        columns = {named.name: named.values.value for named in inputs}
        try:
            out, errors = run_session(self.inner, rows, columns)
            declared = list(self.inner.columns())
            named = [
                wit.NamedValues(name=c.name, values=_VALUES[kind_of(c.data_type)[0]](out[c.name]))
                for c in declared
            ]
        except Exception as e:
            # The whole call fails, with the reason; the host goes on.
            raise Err(f"{type(e).__name__}: {e}")
        return wit.Output(
            columns=named,
            errors=[wit.RowError(row=r, message=m) for r, m in sorted(errors.items())],
        )
