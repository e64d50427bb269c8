"""Render chat messages through a model's Jinja2 chat template, in a hardened sandbox.

Templates come from GGUF metadata, the catalog, a Modelfile or a request, so they are untrusted.
Jinja2's ImmutableSandboxedEnvironment keeps them from Python's internals, but not from asking for
ten gigabytes in one expression (``'x' * 10**10``). The environment here refuses such requests
before computing them, and the output is capped while it is produced, so the common bombs fail fast
with a message naming the cause. A template is still a program: the hard bounds on memory and time
come from rendering it in a worker process (roost.chat.sandbox), which is what the server does.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from string import Formatter
from typing import Any

from jinja2 import TemplateError
from jinja2.compiler import CodeGenerator, Frame
from jinja2.nodes import Concat
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from roost.chat.gotemplate import GoSyntaxError, GoTemplate, is_go_template, translate

MAX_TEMPLATE_BYTES = 256 * 1024
MAX_OUTPUT_CHARS = 8 * 1024 * 1024
# No value a template builds needs more items than the whole prompt has characters.
MAX_ITEMS = MAX_OUTPUT_CHARS
MAX_INT_BITS = 4096

# Used when a model has no template at all: plain ChatML, the most common format.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SEQUENCES = (str, list, tuple)
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")
# Filters whose output is their input written out in full.
_STRINGIFY = frozenset({"tojson", "string", "pprint", "urlencode", "xmlattr", "escape", "e", "forceescape"})


class TemplateRenderError(ValueError):
    pass


def _check_len(n: int, kind: object = "") -> None:
    if n > MAX_ITEMS:
        what = "a string of {} characters" if isinstance(kind, str) else "a list of {} items"
        raise TemplateRenderError("chat template builds " + what.format(n))


def _size(value: Any, limit: int = MAX_ITEMS) -> int:
    """About len(str(value)), counted no further than limit, so huge values are cheap to reject."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int):
        return value.bit_length() // 3 + 1
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        total = 2
        for item in value.items() if isinstance(value, dict) else value:
            total += 2 + _size(item, limit - total)
            if total > limit:
                break
        return total
    if isinstance(value, Namespace):  # its str() is its whole contents
        return _size(object.__getattribute__(value, "__dict__"), limit)
    return len(str(value))


def _check_ints(values: Iterable[Any]) -> None:
    # Widths, counts and repeats: a huge int argument is the usual way to ask for huge output.
    for value in values:
        if isinstance(value, int) and abs(value) > MAX_ITEMS:
            raise TemplateRenderError(f"chat template asks for a size of {value}; the limit is {MAX_ITEMS}")


def _check_format(fmt: str, args: Iterable[Any], percent: bool = False) -> None:
    """str.format, the format filter and %: the output grows with the fields and their widths."""
    values = list(args)
    if percent:
        specs = [m.group(1) + "." + (m.group(2) or "") for m in _PERCENT_SPEC.finditer(fmt)]
    else:
        specs = [spec or "" for _, field, spec, _ in Formatter().parse(fmt) if field is not None]
    if any("*" in s or "{" in s for s in specs):
        _check_ints(values)
    if any(len(n) >= 7 for s in specs for n in re.findall(r"\d+", s)):
        raise TemplateRenderError("chat template formats a field millions of characters wide")
    _check_len(len(fmt) + len(specs) * max((_size(v) for v in values), default=0))


def _check_join(sep: str, items: Any) -> None:
    if isinstance(items, (list, tuple)):
        total = len(sep) * max(len(items) - 1, 0)
        for item in items:
            total += _size(item)
            if total > MAX_ITEMS:
                break
        _check_len(total)


def _check_growth(name: str, s: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The str methods and filters whose output can be far longer than their input."""
    def arg(i: int, key: str, default: Any) -> Any:
        return args[i] if len(args) > i else kwargs.get(key, default)

    if name == "replace":
        old, new = arg(0, "old", ""), arg(1, "new", "")
        if isinstance(old, str) and isinstance(new, str):
            n = s.count(old) if old else len(s) + 1
            _check_len(len(s) + n * (len(new) - len(old)))
    elif name == "expandtabs" and isinstance(arg(0, "tabsize", 8), int):
        _check_len(len(s) + s.count("\t") * arg(0, "tabsize", 8))
    elif name == "indent":
        width = arg(0, "width", 4)
        _check_len(len(s) + (s.count("\n") + 1) * (width if isinstance(width, int) else _size(width)))
    elif name == "wordwrap" and isinstance(arg(0, "width", 79), int):
        lines = len(s) // max(arg(0, "width", 79), 1) + 1
        _check_len(len(s) + lines * _size(arg(2, "wrapstring", None) or "\n"))


def _check_call(name: str, subject: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                filter_: bool = False) -> None:
    values = [*args, *kwargs.values()]
    if name in ("format", "format_map") and isinstance(subject, str):
        _check_format(subject, values, percent=filter_)  # the format filter uses %
        return
    _check_ints(values)
    if name in _STRINGIFY and filter_:
        _check_len(_size(subject))
    elif name == "join":
        if filter_:
            sep = args[0] if args else kwargs.get("d", "")
            _check_join(sep if isinstance(sep, str) else "", subject)
        elif isinstance(subject, str):
            _check_join(subject, args[0] if args else ())
    elif isinstance(subject, str):
        _check_growth(name, subject, args, kwargs)


def _checked(result: Any) -> Any:
    if isinstance(result, _SEQUENCES):
        _check_len(len(result), result)
    return result


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)  # keeps jinja_pass_arg, which decides what the compiler passes
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_call(name, args[skip] if len(args) > skip else None, args[skip + 1:], kwargs, True)
        return _checked(func(*args, **kwargs))

    return guarded


def _concat(parts: Iterable[Any]) -> str:
    """`~` and captured blocks: refuse before joining, since each step can double a string."""
    items = list(parts)
    _check_len(sum(_size(p) for p in items))
    return "".join(map(str, items))


def _finalize(value: Any) -> Any:
    if not isinstance(value, str) and _size(value, MAX_OUTPUT_CHARS) > MAX_OUTPUT_CHARS:
        raise TemplateRenderError(f"chat template output is larger than {MAX_OUTPUT_CHARS >> 20} MiB")
    return value


class _CodeGenerator(CodeGenerator):
    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _Environment(ImmutableSandboxedEnvironment):
    """Refuses, before computing it, any operation that would build a huge value."""

    code_generator_class = _CodeGenerator
    concat = staticmethod(_concat)  # type: ignore[assignment]
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, _SEQUENCES) and isinstance(n, int):
                    _check_len(len(seq) * n, seq)
            if isinstance(left, int) and isinstance(right, int):
                _check_bits(left.bit_length() + right.bit_length())
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            _check_bits(left.bit_length() * right if abs(left) > 1 else 0)
        elif operator == "+" and isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            _check_len(len(left) + len(right), left)
        elif operator == "%" and isinstance(left, str):
            _check_format(left, right.values() if isinstance(right, dict) else
                          right if isinstance(right, tuple) else (right,), percent=True)
        return _checked(super().call_binop(context, operator, left, right))

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        target = getattr(obj, "__wrapped__", obj)  # str.format comes wrapped by the sandbox
        _check_call(getattr(target, "__name__", ""), getattr(target, "__self__", None), args, kwargs)
        return _checked(super().call(context, obj, *args, **kwargs))


def _check_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateRenderError(f"chat template builds a number of about {bits} bits")


def _raise(message: str) -> None:
    raise TemplateRenderError(message)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False, **_: Any) -> str:
    # Transformers' tojson: no HTML escaping, keys in insertion order.
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


def _environment() -> _Environment:
    env = _Environment(trim_blocks=True, lstrip_blocks=True, finalize=_finalize,
                       extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.filters = {name: _guard_filter(name, f) for name, f in env.filters.items()}  # type: ignore[assignment]
    env.globals.pop("lipsum", None)  # pages of text on request: no use to a chat template
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


_ENV = _environment()


@functools.lru_cache(maxsize=32)
def _compile(source: str) -> tuple[Any, GoTemplate | None]:
    """The compiled template; a Go template (Ollama's) is translated to Jinja first."""
    if len(source.encode()) > MAX_TEMPLATE_BYTES:
        raise TemplateRenderError("chat template is too large")
    go = None
    if is_go_template(source):
        try:
            go = translate(source)
        except GoSyntaxError as exc:
            raise TemplateRenderError(str(exc)) from exc
        except RecursionError as exc:
            raise TemplateRenderError("template: nested too deeply") from exc
    try:
        return _ENV.from_string(go.jinja if go else source), go
    except (TemplateError, RecursionError) as exc:
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
    """Render in this process: bounded output, but no bound on time or memory (see sandbox.render)."""
    compiled, go = _compile(template or CHATML)
    if go is not None:  # Ollama's values; a Go template decides for itself where the answer starts
        context = go.context(messages, tools, think)
    else:
        context = {
            "messages": messages, "tools": tools or None, "bos_token": bos_token,
            "eos_token": eos_token, "add_generation_prompt": add_generation_prompt,
            # Qwen3-style templates read enable_thinking; others ignore it.
            **({} if think is None else {"enable_thinking": think is not False, "think": think}),
        }
    parts: list[str] = []
    size = 0
    try:
        for chunk in compiled.generate(**context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateRenderError(f"chat template output is larger than {MAX_OUTPUT_CHARS >> 20} MiB")
            parts.append(chunk)
    except (TemplateRenderError, MemoryError):
        raise
    except Exception as exc:  # a template is user data: any failure is a bad request
        raise TemplateRenderError(f"chat template failed: {exc}") from exc
    return "".join(parts)
