"""What a translated Go template sees: Ollama's template values, and Go's template functions.

Ollama hands its templates Go structs (a message's .Role, .Content, .ToolCalls, a tool's
.Function.Parameters.Properties ...) built from the chat request. The same shapes are built here
from Roost's OpenAI-style messages and tools, as dicts keyed by the Go field names, so that field
access, truthiness, printing ({{ .Tools }} and {{ .Function.Arguments }} print as JSON, as in
Ollama) and the functions (eq, len, slice, index, printf, json ...) behave as a Go template expects.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, ClassVar

MAX_WIDTH = 10_000  # printf widths and precisions: a prompt needs no more
MAX_RANGE = 1_000_000  # {{ range N }}
MAX_STRING = 8 * 1024 * 1024  # as roost.chat.template's MAX_OUTPUT_CHARS: no part of a prompt is longer


class GoError(ValueError):
    """A Go template failing at run time (Go's text/template would fail the same way)."""


class Struct(dict[str, Any]):
    """A Go struct: fields by Go name, in declaration order; JSON by FIELDS' tags."""

    FIELDS: ClassVar[dict[str, tuple[str, bool]]] = {}  # Go name -> (JSON name, omitempty)
    JSON_STRING: ClassVar[bool] = False  # has a String() method that prints JSON

    def go_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.items():
            key, omitempty = self.FIELDS.get(name, (name, False))
            if not (omitempty and (value is None or value == [] or value == {} or value == "")):
                out[key] = value
        return out


class Message(Struct):
    pass


class ToolCall(Struct):
    pass


class ToolCallFunction(Struct):
    pass


class Tool(Struct):
    FIELDS = {"Type": ("type", False), "Items": ("items", True), "Function": ("function", False)}
    JSON_STRING = True


class ToolFunction(Struct):
    FIELDS = {"Name": ("name", False), "Description": ("description", False),
              "Parameters": ("parameters", False)}
    JSON_STRING = True


class ToolParameters(Struct):
    FIELDS = {"Type": ("type", False), "Defs": ("$defs", True), "Items": ("items", True),
              "Required": ("required", True), "Properties": ("properties", False)}
    JSON_STRING = True


class ToolProperty(Struct):
    FIELDS = {"AnyOf": ("anyOf", True), "Type": ("type", True), "Items": ("items", True),
              "Description": ("description", True), "Enum": ("enum", True),
              "Properties": ("properties", True), "Required": ("required", True)}


class JSONMap(dict[str, Any]):
    """A map that prints as JSON: tool call arguments, tool properties."""


class JSONList(list[Any]):
    """The tools list: prints as JSON (null when there are none, as a nil slice does)."""


class PropertyType(list[str]):
    """A JSON schema type: one name, or a list of them."""


# -- building Ollama's values --------------------------------------------------------------------

def _property(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    props = schema.get("properties")
    return ToolProperty(
        AnyOf=[_property(s) for s in schema.get("anyOf") or []],
        Type=PropertyType([kind] if isinstance(kind, str) else kind or []),
        Items=schema.get("items"), Description=schema.get("description", ""),
        Enum=list(schema.get("enum") or []),
        Properties=_properties(props) if isinstance(props, dict) else None,
        Required=list(schema.get("required") or []))


def _properties(props: dict[str, Any]) -> JSONMap:
    return JSONMap(sorted((str(k), _property(v)) for k, v in props.items()))


def tools(specs: list[dict[str, Any]] | None) -> JSONList:
    out = JSONList()
    for spec in specs or []:
        function = spec.get("function") or {}
        params = function.get("parameters") or {}
        out.append(Tool(Type=spec.get("type", "function"), Items=spec.get("items"), Function=ToolFunction(
            Name=function.get("name", ""), Description=function.get("description", ""),
            Parameters=ToolParameters(
                Type=params.get("type", ""), Defs=params.get("$defs"), Items=params.get("items"),
                Required=list(params.get("required") or []),
                Properties=_properties(params.get("properties") or {})))))
    return out


def _arguments(args: Any) -> Any:
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            return args
    return JSONMap(sorted(args.items())) if isinstance(args, dict) else args


def _tool_call(call: dict[str, Any]) -> ToolCall:
    function = call.get("function") or {}
    return ToolCall(ID=call.get("id", ""), Function=ToolCallFunction(
        Index=function.get("index", 0), Name=function.get("name", ""),
        Arguments=_arguments(function.get("arguments"))))


def messages(chat: list[dict[str, Any]]) -> tuple[str, list[Message]]:
    """Ollama's collate: all system texts joined, and consecutive turns of one role (but tool)
    merged into one message."""
    names: dict[str, str] = {}  # a tool result names its tool by the call's id, when it does not say
    systems: list[str] = []
    out: list[Message] = []
    for m in chat:
        role, content = str(m.get("role", "")), str(m.get("content") or "")
        if role == "system":
            systems.append(content)
        calls = [_tool_call(c) for c in m.get("tool_calls") or []]
        names.update((c["ID"], c["Function"]["Name"]) for c in calls if c["ID"])
        if out and out[-1]["Role"] == role and role != "tool":
            out[-1]["Content"] += "\n\n" + content
            continue
        call_id = str(m.get("tool_call_id") or "")
        out.append(Message(Role=role, Content=content, Thinking=str(m.get("thinking") or ""),
                           Images=[], ToolCalls=calls,
                           ToolName=str(m.get("tool_name") or m.get("name") or names.get(call_id, "")),
                           ToolCallID=call_id))
    return "\n\n".join(systems), out


def think_values(think: Any) -> dict[str, Any]:
    level = think if isinstance(think, str) else ""
    return {"Think": bool(think) and think != "false", "ThinkLevel": level,
            "IsThinkSet": think is not None}


# -- printing and JSON ---------------------------------------------------------------------------

def _float(value: float) -> str:
    """Go's %v of a float64: shortest digits, exponent form outside 1e-4 <= |x| < 1e6."""
    if math.isinf(value) or math.isnan(value):
        return "+Inf" if value > 0 else "-Inf" if value < 0 else "NaN"
    sign, digits, exp = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    x = len(text) + int(exp) - 1
    if x < -4 or x >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{'-' if sign else ''}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    return format(Decimal(repr(value)).normalize(), "f")


def go_json(value: Any) -> str:
    """json.Marshal: compact, map keys sorted, <, > and & escaped as Go does."""
    def plain(v: Any) -> Any:
        if isinstance(v, Struct):
            return {k: plain(x) for k, x in v.go_json().items()}
        if isinstance(v, PropertyType):
            return v[0] if len(v) == 1 else list(v)
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    if isinstance(value, JSONList) and not value:
        return "null"
    text = json.dumps(plain(value), ensure_ascii=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def go_str(value: Any, top: bool = True) -> str:
    """fmt's %v, with the String() methods Ollama's template types have."""
    if isinstance(value, str):
        return value
    if value is None:
        return "<no value>" if top else "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, (JSONMap, JSONList)) or (isinstance(value, Struct) and value.JSON_STRING):
        return go_json(value)
    if isinstance(value, PropertyType):
        return value[0] if len(value) == 1 else "[" + " ".join(value) + "]"
    if isinstance(value, Struct):
        return "{" + " ".join(go_str(v, False) for v in value.values()) + "}"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{go_str(k, False)}:{go_str(v, False)}"
                                 for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v, False) for v in value) + "]"
    return str(value)


# -- what the translated template calls ----------------------------------------------------------

def field(value: Any, *names: str) -> Any:
    """`.A.B`: a struct's field, a map's key (missing: no value), an error for anything else."""
    for name in names:
        if isinstance(value, Struct):
            if name not in value:
                raise GoError(f"can't evaluate field {name} in type {type(value).__name__}")
            value = value[name]
        elif isinstance(value, dict):
            value = value.get(name)
        elif value is None:
            raise GoError(f"nil pointer evaluating .{name}")
        else:
            raise GoError(f"can't evaluate field {name} in type {_type(value)}")
    return value


def items(value: Any) -> Iterator[tuple[Any, Any]]:
    """What `range` walks: a list's (index, item), a map's (key, value) by sorted key, 0..N-1."""
    if value is None:
        return iter(())
    if isinstance(value, (bool, str, Struct)):
        raise GoError(f"range can't iterate over {go_str(value)}")
    if isinstance(value, int):
        if value > MAX_RANGE:
            raise GoError(f"range over {value} is too long")
        return ((i, i) for i in range(value))
    if isinstance(value, dict):
        return iter(sorted(value.items(), key=lambda kv: str(kv[0])))
    if isinstance(value, (list, tuple)):
        return iter(enumerate(value))
    raise GoError(f"range can't iterate over {go_str(value)}")


def _type(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float64", str: "string"}.get(type(value), type(value).__name__)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "nil"
    raise GoError(f"non-comparable type {go_str(value)}")


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise GoError("missing argument for comparison")
    for b in others:
        ka, kb = _kind(a), _kind(b)
        if ka != kb and "nil" not in (ka, kb):
            raise GoError("incompatible types for comparison")
        if a == b:
            return True
    return False


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        ka, kb = _kind(a), _kind(b)
        if ka != kb or ka not in ("number", "string"):
            raise GoError("incompatible types for comparison")
        return op(a, b)
    return compare


def _len(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, (list, tuple)) or (isinstance(value, dict) and not isinstance(value, Struct)):
        return len(value)
    raise GoError(f"len of type {_type(value)}")


def _position(i: Any, n: int, what: str) -> int:
    if isinstance(i, bool) or not isinstance(i, int):
        raise GoError(f"cannot index {what} with {go_str(i)}")
    if not 0 <= i <= n:
        raise GoError(f"index out of range: {i}")
    return i


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, str):
            data = value.encode()
            value = data[_position(key, len(data) - 1, "string")]
        elif isinstance(value, (list, tuple)):
            value = value[_position(key, len(value) - 1, "slice")]
        elif isinstance(value, dict) and not isinstance(value, Struct):
            value = value.get(key)
        else:
            raise GoError(f"can't index item of type {_type(value)}")
    return value


def _slice(value: Any, *bounds: Any) -> Any:
    if len(bounds) > 3 or (isinstance(value, str) and len(bounds) > 2):
        raise GoError("too many slice indexes")
    data = value.encode() if isinstance(value, str) else value
    if not isinstance(data, (bytes, list, tuple)):
        raise GoError(f"can't slice item of type {_type(value)}")
    cap = len(data)
    idx = [_position(b, cap, "slice") for b in bounds]
    if len(idx) >= 2 and idx[1] < idx[0] or len(idx) == 3 and idx[2] < idx[1]:
        raise GoError(f"invalid slice index: {idx[0]} > {idx[1]}")
    part = data[idx[0] if idx else 0: idx[1] if len(idx) > 1 else cap]
    return part.decode(errors="replace") if isinstance(part, bytes) else list(part)


def _bounded(texts: list[str], extra: int = 0) -> list[str]:
    """Refuse, before joining them, texts that would make a string longer than any prompt."""
    total = extra + sum(len(t) for t in texts)
    if total > MAX_STRING:
        raise GoError(f"template builds a string of {total} characters")
    return texts


def _print(*args: Any) -> str:
    """fmt.Sprint: a space between two operands when neither is a string."""
    texts = _bounded([go_str(a, False) for a in args], len(args))
    out = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(texts[i])
    return "".join(out)


def _println(*args: Any) -> str:
    return " ".join(_bounded([go_str(a, False) for a in args], len(args))) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\d*)(?:\.(\d*))?([a-zA-Z%])")


def _printf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf for the verbs templates use: %v %s %d %q %t %f %e %g %x %X %c and %%."""
    values = list(args)
    widths = sum(int(m.group(2) or 0) + int(m.group(3) or 0) for m in _VERB.finditer(fmt))
    _bounded([fmt, *(go_str(v, False) for v in values)], widths)

    def one(m: re.Match[str]) -> str:
        flags, width, precision, verb = m.groups()
        if verb == "%":
            return "%"
        if not values:
            return f"%!{verb}(MISSING)"
        if int(width or 0) > MAX_WIDTH or int(precision or 0) > MAX_WIDTH:
            raise GoError("printf width is too large")
        value = values.pop(0)
        text = _verb(verb, value, flags, precision)
        pad = int(width or 0) - len(text)
        if pad <= 0:
            return text
        if "-" in flags:
            return text + " " * pad
        fill = "0" if "0" in flags and verb in "dfegxX" else " "
        return fill * pad + text if fill == " " or text[:1] not in "+-" else text[0] + "0" * pad + text[1:]

    out = _VERB.sub(one, fmt)
    if values:
        out += "%!(EXTRA " + ", ".join(f"{_type(v)}={go_str(v, False)}" for v in values) + ")"
    return out


def _verb(verb: str, value: Any, flags: str, precision: str | None) -> str:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    plus = "+" if "+" in flags else ""
    if verb in "vs":
        text = go_str(value, False)
        return text[:int(precision)] if precision and verb == "s" else text
    if verb == "q" and isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if verb == "t" and isinstance(value, bool):
        return go_str(value)
    if verb == "d" and number and isinstance(value, int):
        return format(value, plus + "d")
    if verb in "xX" and (isinstance(value, str) or (number and isinstance(value, int))):
        text = value.encode().hex() if isinstance(value, str) else format(value, "x")
        return text.upper() if verb == "X" else text
    if verb == "c" and number and isinstance(value, int):
        return chr(value)
    if verb in "feEgG" and number:
        spec = f"{plus}.{precision or 6}{verb}" if precision or verb in "feE" else plus + verb
        return format(float(value), spec) if verb in "feE" or precision else _float(float(value))
    return f"%!{verb}({_type(value)}={go_str(value, False)})"


def _typescript(value: Any) -> str:
    def one(kind: str) -> str:
        return {"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
                "array": "any[]", "object": "Record<string, any>", "null": "null"}.get(kind, "any")
    if not isinstance(value, ToolProperty):
        return "any"
    if value["AnyOf"]:
        return " | ".join(_typescript(p) for p in value["AnyOf"])
    return " | ".join(one(k) for k in value["Type"]) or "any"


def _html(*args: Any) -> str:
    text = _print(*args)
    for char, escape in (("&", "&amp;"), ("'", "&#39;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&#34;")):
        text = text.replace(char, escape)
    return text


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _ordered(lambda a, b: a < b),
    "le": _ordered(lambda a, b: a <= b),
    "gt": _ordered(lambda a, b: a > b),
    "ge": _ordered(lambda a, b: a >= b),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": _print,
    "println": _println,
    "printf": _printf,
    "json": go_json,
    "html": _html,
    "urlquery": lambda *a: urllib.parse.quote_plus(_print(*a)),
    "currentDate": lambda *_: date.today().isoformat(),
    "yesterdayDate": lambda *_: (date.today() - timedelta(days=1)).isoformat(),
    "toTypeScriptType": _typescript,
}
