"""ConfigError, and pydantic's errors turned into the operator's ``path: sentence`` form.

Every pass (YAML, fields, semantic checks) reports into one ConfigError, so an operator
fixes a file in one round instead of one error per run. A pydantic error becomes
``links[1].gateway: not an IPv4/IPv6 address``: the location as a path, the validator's
own sentence without pydantic's prefix, bounds as the operator wrote them, and an unknown
key with the closest known one (did you mean ...?) of the model that holds it.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


class ConfigError(Exception):
    """Every problem found in one config, each as ``path: message``.

    ``errors`` is the plain list (stable, for tests and the API); ``str()`` adds the source
    file and, where known, the YAML line of each path, for the operator's terminal.
    """

    def __init__(
        self,
        errors: Sequence[str],
        source: str = "<string>",
        lines: Sequence[int | None] | None = None,
    ) -> None:
        self.errors: list[str] = list(errors)
        self.source = source
        self.lines: list[int | None] = list(lines) if lines is not None else [None] * len(errors)
        super().__init__(self._render())

    def _render(self) -> str:
        count = len(self.errors)
        head = f"{self.source}: {count} error{'s' if count != 1 else ''}"
        body = [
            f"  {self.source}:{line}: {err}" if line is not None else f"  {self.source}: {err}"
            for err, line in zip(self.errors, self.lines, strict=True)
        ]
        return "\n".join([head, *body])


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _model_at(loc: Sequence[int | str], root: type[BaseModel]) -> type[BaseModel] | None:
    """The model class that holds the last element of ``loc``, to suggest field names."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        model = _find_model(field.annotation)
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Annotated or origin is list or origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(annotation):
            found = _find_model(arg)
            if found is not None:
                return found
    return None


_BOUND_KINDS = {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}


def _num(value: object) -> str:
    """``1.0`` as ``1``: bounds read as the operator wrote them."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _message(err: ErrorDetails, root: type[BaseModel]) -> str:
    kind = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        model = _model_at(err["loc"], root)
        name = str(err["loc"][-1])
        if model is not None:
            keys = [f.alias or key for key, f in model.model_fields.items()]
            close = difflib.get_close_matches(name, keys, n=1)
            if close:
                return f"unknown field (did you mean {close[0]}?)"
        return "unknown field"
    if kind in {"value_error", "assertion_error"}:
        msg = str(err["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        return msg
    for key, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if kind in _BOUND_KINDS and key in ctx:
            return f"must be {op} {_num(ctx[key])}"
    if kind == "too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else str(err["msg"])
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return "must be a whole number"
    if kind in {"float_type", "float_parsing"}:
        return "must be a number"
    if kind in {"string_type"}:
        return "must be a string"
    if kind in {"bool_type", "bool_parsing"}:
        return "must be true or false"
    if kind in {"list_type"}:
        return "must be a list"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return "must be a mapping of keys to values"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}"
    return str(err["msg"])


def pydantic_errors(exc: ValidationError, root: type[BaseModel]) -> list[str]:
    """``path: message`` for each error of validating ``root``, in pydantic's order."""
    out = []
    for err in exc.errors(include_url=False):
        path = _path(err["loc"])
        msg = _message(err, root)
        out.append(f"{path}: {msg}" if path else msg)
    return out
