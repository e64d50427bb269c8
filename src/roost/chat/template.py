"""Render chat messages through a model's Jinja2 chat template, in a sandbox.

Templates come from GGUF metadata, the catalog or a user's Modelfile, so they are untrusted:
they render only in Jinja2's ImmutableSandboxedEnvironment, with the variables
Transformers-style templates expect, and with bounds on template and output size.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_TEMPLATE_BYTES = 256 * 1024
MAX_OUTPUT_CHARS = 8 * 1024 * 1024

# Used when a model has no template at all: plain ChatML, the most common format.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class TemplateRenderError(ValueError):
    pass


def _raise(message: str) -> None:
    raise TemplateRenderError(message)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False, **_: Any) -> str:
    # Transformers' tojson: no HTML escaping, keys in insertion order.
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


@lru_cache(maxsize=32)
def _compile(source: str) -> Any:
    if len(source.encode()) > MAX_TEMPLATE_BYTES:
        raise TemplateRenderError("chat template is too large")
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except TemplateError as exc:
        raise TemplateRenderError(f"invalid chat template: {exc}") from exc


def render(
    template: str | None,
    messages: list[dict[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    tools: list[dict[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    think: Any = None,
) -> str:
    compiled = _compile(template or CHATML)
    try:
        text = compiled.render(
            messages=messages,
            tools=tools or None,
            bos_token=bos_token,
            eos_token=eos_token,
            add_generation_prompt=add_generation_prompt,
            # Qwen3-style templates read enable_thinking; others ignore it.
            **({} if think is None else {"enable_thinking": think is not False, "think": think}),
        )
    except TemplateRenderError:
        raise
    except Exception as exc:  # a template is user data: any failure is a bad request
        raise TemplateRenderError(f"chat template failed: {exc}") from exc
    if len(text) > MAX_OUTPUT_CHARS:
        raise TemplateRenderError("rendered prompt is too large")
    return text
