"""The base of every wire type a client sends: unknown fields kept, and `null` as absent.

Clients send fields a server may lack (newer versions, other dialects), so they are kept and
never change behaviour by themselves. And many clients write `"stream": null` for "not set":
OpenAI's spec allows it, and Ollama's Go decoder leaves such a field at its default. A null
in a field that has a default and no meaning for null is therefore dropped before validation,
so the default applies; a null in a required field is still an error.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

_NON_NULLABLE: dict[type, frozenset[str]] = {}


class Wire(BaseModel):
    model_config = ConfigDict(extra="allow", defer_build=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if not isinstance(data, dict) or None not in data.values():
            return data
        names = _non_nullable(cls)
        return {k: v for k, v in data.items() if v is not None or k not in names}


def _non_nullable(cls: type[BaseModel]) -> frozenset[str]:
    """The keys (names and aliases) of the fields with a default whose type excludes None."""
    names = _NON_NULLABLE.get(cls)
    if names is None:
        keys: set[str] = set()
        for name, field in cls.model_fields.items():
            if not field.is_required() and not _allows_none(field.annotation):
                keys.update(k for k in (name, field.alias) if k)
        names = _NON_NULLABLE[cls] = frozenset(keys)
    return names


def _allows_none(annotation: Any) -> bool:
    if annotation is None or annotation is type(None) or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _allows_none(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_allows_none(a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return None in typing.get_args(annotation)
    return False
