"""Parameters, declared once: the manifest's JSON Schema and the checks
made when a session opens both come from the declarations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence


class OpenError(Exception):
    """Why a session could not be opened (anything but a bad parameter)."""


class ParamError(OpenError):
    """A parameter is missing, unknown or out of range."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"parameter `{param}`: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True)
class Param:
    """A parameter an extractor accepts. Build with :meth:`uint`,
    :meth:`boolean` or :meth:`string`."""

    name: str
    kind: str
    default: Any
    description: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] | None = None

    @staticmethod
    def uint(name: str, default: int, minimum: int, maximum: int, description: str) -> "Param":
        """An unsigned integer in ``minimum..=maximum``, ``default`` when absent."""
        if not minimum <= default <= maximum:
            raise ValueError(f"parameter `{name}`: default {default} is outside {minimum}..={maximum}")
        return Param(name, "uint", default, description, minimum, maximum)

    @staticmethod
    def boolean(name: str, default: bool, description: str) -> "Param":
        """A boolean, ``default`` when absent."""
        return Param(name, "bool", bool(default), description)

    @staticmethod
    def string(name: str, default: str, choices: Sequence[str], description: str) -> "Param":
        """One of ``choices``, ``default`` when absent."""
        choices = tuple(choices)
        if default not in choices:
            raise ValueError(f"parameter `{name}`: default {default!r} is not one of {choices}")
        return Param(name, "string", default, description, choices=choices)

    def schema(self) -> dict:
        """This parameter's JSON Schema."""
        if self.kind == "uint":
            return {
                "type": "integer",
                "minimum": self.minimum,
                "maximum": self.maximum,
                "default": self.default,
                "description": self.description,
            }
        if self.kind == "bool":
            return {"type": "boolean", "default": self.default, "description": self.description}
        return {
            "type": "string",
            "enum": list(self.choices or ()),
            "default": self.default,
            "description": self.description,
        }

    def read(self, values: dict) -> Any:
        """This parameter's value in ``values``, checked, or its default."""
        if self.name not in values:
            return self.default
        value = values[self.name]
        if self.kind == "uint":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ParamError(self.name, f"expected an integer, got {_kind(value)}")
            if not self.minimum <= value <= self.maximum:
                raise ParamError(
                    self.name, f"must be between {self.minimum} and {self.maximum}, got {value}"
                )
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ParamError(self.name, f"expected a boolean, got {_kind(value)}")
            return value
        if not isinstance(value, str):
            raise ParamError(self.name, f"expected a string, got {_kind(value)}")
        if value not in (self.choices or ()):
            raise ParamError(self.name, f"must be one of {', '.join(self.choices or ())}, got {value!r}")
        return value


def params_schema(params: Sequence[Param]) -> dict:
    """The JSON Schema of a parameters object made of ``params`` and nothing else."""
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {p.name: p.schema() for p in params},
    }


def parse_params(text: str, declared: Sequence[Param]) -> dict:
    """The parameters in ``text`` (a JSON object; empty or ``null`` for none),
    checked against ``declared``, with defaults filled in."""
    if text.strip() in ("", "null"):
        values: dict = {}
    else:
        try:
            values = json.loads(text)
        except ValueError as e:
            raise OpenError(f"parameters are not valid JSON: {e}") from None
        if not isinstance(values, dict):
            raise OpenError(f"parameters must be a JSON object, got {_kind(values)}")
    names = [p.name for p in declared]
    unknown = sorted(k for k in values if k not in names)
    if unknown:
        known = ", ".join(names) if names else "none"
        raise ParamError(unknown[0], f"unknown parameter (known: {known})")
    return {p.name: p.read(values) for p in declared}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
