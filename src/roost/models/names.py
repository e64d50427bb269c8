"""Model names by Ollama's rules: `[host/][namespace/]model[:tag]`, compared case-insensitively.

A name is validated here, once, before any path is built from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}$")
_NAMESPACE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,79}$")
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")


class InvalidName(ValueError):
    """A model name that breaks the naming rules."""


@dataclass(frozen=True)
class Name:
    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> Name:
        raw = text.strip()
        if not raw:
            raise InvalidName("model name is empty")
        raw = raw.split("@", 1)[0]
        for scheme in ("https://", "http://"):
            if raw.startswith(scheme):
                raw = raw[len(scheme):]
        path, tag = raw, DEFAULT_TAG
        last_slash = raw.rfind("/")
        colon = raw.rfind(":")
        if colon > last_slash:
            path, tag = raw[:colon], raw[colon + 1:]
        parts = path.split("/")
        if len(parts) == 1:
            host, namespace, model = DEFAULT_HOST, DEFAULT_NAMESPACE, parts[0]
        elif len(parts) == 2:
            host, (namespace, model) = DEFAULT_HOST, parts
        elif len(parts) == 3:
            host, namespace, model = parts
        else:
            raise InvalidName(f"invalid model name {text!r}")
        name = cls(host, namespace, model, tag)
        name._validate(text)
        return name

    def _validate(self, text: str) -> None:
        ok = (
            bool(_HOST.match(self.host))
            and bool(_NAMESPACE.match(self.namespace))
            and bool(_PART.match(self.model))
            and bool(_PART.match(self.tag))
            and ".." not in self.host
        )
        if not ok:
            raise InvalidName(f"invalid model name {text!r}")

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Case-folded identity: two names with equal keys are the same model."""
        return (self.host.lower(), self.namespace.lower(), self.model.lower(), self.tag.lower())

    @property
    def short(self) -> str:
        """The name as Ollama shows it: default host and namespace left out."""
        if self.host == DEFAULT_HOST and self.namespace == DEFAULT_NAMESPACE:
            return f"{self.model}:{self.tag}"
        if self.host == DEFAULT_HOST:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def __str__(self) -> str:
        return self.short
