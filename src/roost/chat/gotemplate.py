"""Ollama's Go templates, run as Jinja in the template sandbox.

Modelfiles written for Ollama carry Go text/template source ({{ .System }}, {{ range .Messages }},
{{ if .Tools }} ...). Rather than a second template engine with its own bounds, a Go template is
parsed (roost.chat.goparse) and translated into a Jinja template that renders in the same
hardened environment and worker processes as every other template, calling the helpers of
roost.chat.govalues for Go's semantics (field access, printing, range, eq, len, slice, ...).

Ollama runs a template in one of two ways, and so does Roost. A template that mentions .Messages
renders once over the whole conversation. Any other (the legacy .System/.Prompt/.Response form)
renders once per user turn, and the last turn renders only up to its {{ .Response }}, so that the
prompt ends where the model's answer begins.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from roost.chat import govalues
from roost.chat.goparse import (
    Action,
    Arg,
    Branch,
    Call,
    Chain,
    Const,
    Dot,
    Field,
    GoSyntaxError,
    Ident,
    Jump,
    Loop,
    Node,
    Pipe,
    Template,
    Text,
    Tree,
    Var,
    parse,
)

__all__ = ["GoSyntaxError", "GoTemplate", "is_go_template", "translate"]

MAX_JINJA_CHARS = 1 << 20  # a translation this long has expanded {{ template }} calls too far
# `{{ .Field`, `{{ $var`, `{{- if`, `{{ range`, `{{/* comment */}}` ... never the start of a Jinja
# expression; and a Go field (`.Name`, capitalised) after anything but a name or a bracket.
_GO_ACTION = re.compile(r"\{\{-?\s*(?:[.$]|/\*|(?:if|range|with|end|else|define|template|block)\b)"
                        r"|\{\{[^}]*?(?<![\w)\]])\.[A-Z]")
_HELPERS: dict[str, Any] = {"_go_field": govalues.field, "_go_items": govalues.items,
                            "_go_print": govalues.go_str,
                            **{f"_go_fn_{name}": f for name, f in govalues.FUNCTIONS.items()}}


def is_go_template(text: str) -> bool:
    """Cheap: Jinja has no `{{ .X }}`; a template with `{%` or `{#` is Jinja's."""
    return "{%" not in text and "{#" not in text and _GO_ACTION.search(text) is not None


@dataclass(frozen=True)
class GoTemplate:
    jinja: str  # renders with context() as its variables
    legacy: bool  # renders once per turn (.Prompt/.Response), not once over .Messages

    def context(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
                think: Any) -> dict[str, Any]:
        """Ollama's template values for this conversation, and the helpers the Jinja calls."""
        system, collated = govalues.messages(messages)
        thinking = govalues.think_values(think)
        if not self.legacy:
            root = {"System": system, "Messages": collated, "Tools": govalues.tools(tools),
                    "Response": "", **thinking}
            return {**_HELPERS, "_root": root}
        return {**_HELPERS, "_turns": _turns(collated, thinking)}


def _turns(collated: list[govalues.Message], thinking: dict[str, Any]) -> list[dict[str, Any]]:
    """Ollama's legacy loop: a new turn starts at a system message after a prompt or response,
    or at a user message after a response; the last turn is the one the model completes."""
    turns: list[dict[str, Any]] = []
    turn = {"System": "", "Prompt": "", "Response": ""}
    for m in collated:
        role, content = m["Role"], m["Content"]
        if (role == "system" and (turn["Prompt"] or turn["Response"])) or \
                (role == "user" and turn["Response"]):
            turns.append({**turn, **thinking})
            turn = {"System": "", "Prompt": "", "Response": ""}
        key = {"system": "System", "user": "Prompt", "assistant": "Response"}.get(role)
        if key:
            turn[key] = content
    return [*turns, {**turn, **thinking}]


def translate(source: str) -> GoTemplate:
    """The Jinja form of a Go template, or GoSyntaxError ("template: line N: ...")."""
    tree = parse(source)
    names = {n.lower() for node in [*tree.root, *(n for b in tree.defines.values() for n in b)]
             for n in _identifiers(node)}
    legacy = "messages" not in names
    if legacy and "response" not in names:  # as Ollama does: the answer follows the template
        tree.root.append(Action(Pipe(1, [Call([Field(("Response",))])])))
    emit = _Emitter(tree)
    if not legacy:
        emit.out.append("{% set _ns = namespace() %}")
        emit.nodes(tree.root, _Scope("_root", "_root", [{}]))
        return GoTemplate("".join(emit.out), legacy=False)
    emit.out.append("{% for _turn in _turns %}{% set _ns = namespace() %}{% if loop.last %}")
    emit.nodes(_Cut().nodes(copy.deepcopy(tree.root)), _Scope("_turn", "_turn", [{}]))
    emit.out.append("{% else %}")
    emit.nodes(tree.root, _Scope("_turn", "_turn", [{}]))
    emit.out.append("{% endif %}{% endfor %}")
    return GoTemplate("".join(emit.out), legacy=True)


def _identifiers(node: Node | Arg) -> Iterator[str]:
    """The names a template mentions, as Ollama's template.Identifiers collects them."""
    if isinstance(node, Action):
        yield from _identifiers(node.pipe)
    elif isinstance(node, (Branch, Loop)):
        yield from _identifiers(node.pipe)
        for child in [*node.body, *node.orelse]:
            yield from _identifiers(child)
    elif isinstance(node, Template):
        if node.pipe is None:
            raise GoSyntaxError(node.line, "undefined template specified")  # Ollama refuses it too
        yield from _identifiers(node.pipe)
    elif isinstance(node, Pipe):
        for cmd in node.cmds:
            for arg in cmd.args:
                yield from _identifiers(arg)
    elif isinstance(node, Field):
        yield from node.names
    elif isinstance(node, Var):
        yield node.name
        yield from node.names


class _Cut:
    """Ollama's cut of the last legacy turn: everything after the first .Response goes."""

    def __init__(self) -> None:
        self.cut = False

    def hit(self, node: object) -> bool:
        if isinstance(node, Field) and "Response" in node.names:
            self.cut = True
            return False
        return self.cut

    def nodes(self, nodes: list[Node]) -> list[Node]:
        if self.hit(nodes):
            return []
        kept = []
        for node in nodes:
            if self.hit(node):
                continue
            if isinstance(node, (Branch, Loop)):
                node = dataclasses.replace(node, body=self.nodes(node.body), orelse=self.nodes(node.orelse))
            elif isinstance(node, Action):
                pipe = self.pipe(node.pipe)
                if pipe is None:
                    continue
                node = Action(pipe)
            kept.append(node)
        return kept

    def pipe(self, pipe: Pipe) -> Pipe | None:
        if self.hit(pipe):
            return None
        cmds = []
        for cmd in pipe.cmds:
            args: list[Arg] = []
            for arg in cmd.args:
                kept = None if self.hit(arg) else self.pipe(arg) if isinstance(arg, Pipe) else arg
                if kept is not None:
                    args.append(kept)
            if args:
                cmds.append(Call(args))
        return dataclasses.replace(pipe, cmds=cmds) if cmds else None


@dataclass
class _Scope:
    dot: str  # the Jinja expression that is Go's dot here
    root: str  # and Go's $
    frames: list[dict[str, str]]  # Go variable -> its slot in the _ns namespace

    def child(self, dot: str | None = None) -> _Scope:
        return _Scope(dot or self.dot, self.root, [*self.frames, {}])

    def lookup(self, name: str, line: int) -> str:
        if name == "$":
            return self.root
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        raise GoSyntaxError(line, f'undefined variable "{name}"')


def _literal(value: str | int | float | bool | None) -> str:
    if value is None or isinstance(value, bool):
        return {None: "none", True: "true", False: "false"}[value]
    if isinstance(value, str):  # braces escaped, so nothing in a literal looks like a delimiter
        return repr(value).replace("{", "\\x7b").replace("}", "\\x7d").replace("%", "\\x25") \
            .replace("#", "\\x23")
    return f"({value!r})"


class _Emitter:
    """Writes the Jinja for a tree: every piece of text an expression, so that no Jinja option
    (trim_blocks, lstrip_blocks) touches the template's own whitespace."""

    def __init__(self, tree: Tree) -> None:
        self.defines = tree.defines
        self.out: list[str] = []
        self.size = 0
        self.count = 0
        self.calls: list[str] = []

    def write(self, text: str, line: int = 1) -> None:
        self.size += len(text)
        if self.size > MAX_JINJA_CHARS:
            raise GoSyntaxError(line, "template is too large once its {{template}} calls are expanded")
        self.out.append(text)

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def nodes(self, nodes: list[Node], scope: _Scope) -> None:
        for node in nodes:
            self.node(node, scope)

    def node(self, node: Node, scope: _Scope) -> None:
        if isinstance(node, Text):
            self.write("{{ " + _literal(node.text) + " }}")
        elif isinstance(node, Action):
            if node.pipe.decl:
                self.value(node.pipe, scope)
            else:
                self.write("{{ _go_print(" + self.pipe(node.pipe, scope) + ") }}", node.pipe.line)
        elif isinstance(node, Branch):
            self.branch(node, scope)
        elif isinstance(node, Loop):
            self.loop(node, scope)
        elif isinstance(node, Template):
            self.template(node, scope)
        elif isinstance(node, Jump):
            self.write("{% " + node.kind + " %}")

    def value(self, pipe: Pipe, scope: _Scope) -> str:
        """Evaluate a pipeline once; with a declaration, into its variable's slot."""
        expr = self.pipe(pipe, scope)
        if not pipe.decl:
            return expr
        name = pipe.decl[0]
        if pipe.assign:
            slot = scope.lookup(name, pipe.line)
            if slot == scope.root:
                raise GoSyntaxError(pipe.line, "cannot assign to $")
        else:
            slot = scope.frames[-1][name] = "_ns." + self.name("v")
        self.write("{% set " + slot + " = " + expr + " %}", pipe.line)
        return slot

    def branch(self, node: Branch, scope: _Scope) -> None:
        inner = scope.child()
        cond = self.value(node.pipe, inner)
        if node.kind == "if":
            self.write("{% if " + cond + " %}")
            self.nodes(node.body, inner.child())
        else:  # with: dot becomes the value, in the body only
            dot = self.name("_d")
            self.write("{% with " + dot + " = " + cond + " %}{% if " + dot + " %}")
            self.nodes(node.body, inner.child(dot))
        self.write("{% else %}")
        self.nodes(node.orelse, inner.child())
        self.write("{% endif %}" if node.kind == "if" else "{% endif %}{% endwith %}")

    def loop(self, node: Loop, scope: _Scope) -> None:
        inner = scope.child()
        expr = self.pipe(dataclasses.replace(node.pipe, decl=[]), inner)
        key, dot = self.name("_k"), self.name("_d")
        self.write("{% for " + key + ", " + dot + " in _go_items(" + expr + ") %}", node.pipe.line)
        decl = node.pipe.decl
        for name, value in zip(decl, [key, dot] if len(decl) == 2 else [dot], strict=False):
            slot = inner.frames[-1][name] = "_ns." + self.name("v")
            self.write("{% set " + slot + " = " + value + " %}")
        self.nodes(node.body, inner.child(dot))
        self.write("{% else %}")
        self.nodes(node.orelse, inner.child())
        self.write("{% endfor %}")

    def template(self, node: Template, scope: _Scope) -> None:
        body = self.defines.get(node.name)
        if body is None:
            raise GoSyntaxError(node.line, f'no such template "{node.name}"')
        if node.name in self.calls:
            raise GoSyntaxError(node.line, f'template "{node.name}" calls itself: not supported')
        dot = self.name("_d")
        value = self.pipe(node.pipe, scope) if node.pipe is not None else "none"
        self.write("{% with " + dot + " = " + value + " %}", node.line)
        self.calls.append(node.name)
        self.nodes(body, _Scope(dot, dot, [{}]))
        self.calls.pop()
        self.write("{% endwith %}")

    def pipe(self, pipe: Pipe, scope: _Scope) -> str:
        expr: str | None = None
        for cmd in pipe.cmds:
            expr = self.command(cmd, scope, expr, pipe.line)
        assert expr is not None
        return expr

    def command(self, cmd: Call, scope: _Scope, previous: str | None, line: int) -> str:
        head, rest = cmd.args[0], cmd.args[1:]
        if isinstance(head, Ident):
            args = [self.arg(a, scope, line) for a in rest]
            return self.call(head.name, args if previous is None else [*args, previous], line)
        if rest or previous is not None:
            raise GoSyntaxError(line, "can't give argument to non-function " + _describe(head))
        if isinstance(head, Const) and head.value is None:
            raise GoSyntaxError(line, "nil is not a command")
        return self.arg(head, scope, line)

    def arg(self, arg: Arg, scope: _Scope, line: int) -> str:
        if isinstance(arg, Dot):
            return scope.dot
        if isinstance(arg, Const):
            return _literal(arg.value)
        if isinstance(arg, Field):
            return _field(scope.dot, arg.names)
        if isinstance(arg, Var):
            return _field(scope.lookup(arg.name, line), arg.names)
        if isinstance(arg, Ident):
            return self.call(arg.name, [], line)
        if isinstance(arg, Chain):
            return _field(self.arg(arg.node, scope, line), arg.names)
        return "(" + self.pipe(arg, scope) + ")"

    def call(self, name: str, args: list[str], line: int) -> str:
        if name in ("and", "or"):
            if not args:
                raise GoSyntaxError(line, f"wrong number of args for {name}: want at least 1 got 0")
            return "(" + f" {name} ".join(args) + ")"
        if name == "not":
            if len(args) != 1:
                raise GoSyntaxError(line, f"wrong number of args for not: want 1 got {len(args)}")
            return f"(not {args[0]})"
        if name not in govalues.FUNCTIONS:
            raise GoSyntaxError(line, f'function "{name}" not defined')
        return f"_go_fn_{name}(" + ", ".join(args) + ")"


def _field(base: str, names: tuple[str, ...]) -> str:
    if not names:
        return base
    return "_go_field(" + base + ", " + ", ".join(repr(n) for n in names) + ")"


def _describe(arg: Arg) -> str:
    if isinstance(arg, Field):
        return "." + ".".join(arg.names)
    if isinstance(arg, Var):
        return ".".join([arg.name, *arg.names])
    if isinstance(arg, Const):
        return repr(arg.value)
    return "."
