"""Parse Go text/template source (the TEMPLATE of Ollama's Modelfiles) into a small tree.

Only the syntax is handled here: delimiters and `{{-`/`-}}` trimming, comments, pipelines with
`|`, parentheses and field chains, variables, and the control actions (if/else if/range/with/
define/block/template/break/continue). Meaning is given by roost.chat.gotemplate, which turns the
tree into a Jinja template for the existing sandbox, so Go templates get the same bounds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Action", "Branch", "Call", "Chain", "Const", "Dot", "Field", "GoSyntaxError", "Ident",
           "Jump", "Loop", "Node", "Pipe", "Template", "Text", "Tree", "Var", "parse"]

_SPACE = " \t\r\n"
_KEYWORDS = frozenset({"if", "else", "end", "range", "with", "template", "define", "block",
                       "break", "continue"})
_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+)
  | (?P<declare>:=) | (?P<assign>=) | (?P<pipe>\|) | (?P<lparen>\() | (?P<rparen>\)) | (?P<comma>,)
  | (?P<string>"(?:[^"\\\n]|\\.)*") | (?P<raw>`[^`]*`) | (?P<char>'(?:[^'\\\n]|\\.)+')
  | (?P<number>[+-]?(?:\d|\.\d)[\w.]*(?:(?<=[eEpP])[+-][\w.]*)?)
  | (?P<field>\.[A-Za-z_]\w*) | (?P<dot>\.) | (?P<var>\$\w*) | (?P<ident>[A-Za-z_]\w*)
""", re.VERBOSE)
_ESCAPE = re.compile(r"\\(?:([abfnrtv\\'\"])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})"
                     r"|([0-7]{3})|(.))", re.DOTALL)
_SIMPLE = dict(zip("abfnrtv\\'\"", "\a\b\f\n\r\t\v\\'\"", strict=True))


class GoSyntaxError(ValueError):
    """A template Go would refuse, or one Roost cannot translate: "template: line N: ..."."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"template: line {line}: {message}")


# -- the tree ----------------------------------------------------------------------------------

@dataclass
class Dot:
    pass


@dataclass
class Const:
    value: str | int | float | bool | None


@dataclass
class Field:  # .A.B on dot
    names: tuple[str, ...]


@dataclass
class Var:  # $x.A.B
    name: str
    names: tuple[str, ...] = ()


@dataclass
class Ident:  # a function's name
    name: str


@dataclass
class Chain:  # (pipeline).A.B
    node: Arg
    names: tuple[str, ...]


@dataclass
class Call:
    """One command of a pipeline: a function and its arguments, or a lone operand."""

    args: list[Arg]


@dataclass
class Pipe:
    line: int
    cmds: list[Call]
    decl: list[str] = field(default_factory=list)  # variable names, "$x"
    assign: bool = False  # `$x = ...` rather than `$x := ...`


Arg = Dot | Const | Field | Var | Ident | Chain | Pipe


@dataclass
class Text:
    text: str


@dataclass
class Action:
    pipe: Pipe


@dataclass
class Branch:  # if / with
    kind: str
    pipe: Pipe
    body: list[Node]
    orelse: list[Node]


@dataclass
class Loop:  # range
    pipe: Pipe
    body: list[Node]
    orelse: list[Node]


@dataclass
class Template:  # {{ template "name" pipeline }}
    line: int
    name: str
    pipe: Pipe | None


@dataclass
class Jump:  # break / continue
    kind: str


Node = Text | Action | Branch | Loop | Template | Jump


@dataclass
class Tree:
    root: list[Node]
    defines: dict[str, list[Node]]


# -- lexing --------------------------------------------------------------------------------------

@dataclass
class _Token:
    kind: str
    value: str
    line: int
    spaced: bool  # whitespace came before it (it separates operands)


def _unquote(body: str, line: int) -> str:
    def one(m: re.Match[str]) -> str:
        simple, hex2, hex4, hex8, octal, bad = m.groups()
        if bad is not None:
            raise GoSyntaxError(line, f"unknown escape sequence \\{bad}")
        if simple:
            return _SIMPLE[simple]
        return chr(int(hex2 or hex4 or hex8 or "0", 16) if octal is None else int(octal, 8))
    return _ESCAPE.sub(one, body)


def _number(text: str, line: int) -> int | float:
    digits = text.replace("_", "")
    try:
        return int(digits, 0)
    except ValueError:
        pass
    try:
        value = int(digits, 8) if re.fullmatch(r"[+-]?0[0-7]+", digits) else float(digits)
    except ValueError:
        raise GoSyntaxError(line, f"bad number syntax: {text!r}") from None
    if value in (float("inf"), float("-inf")) or value != value:
        raise GoSyntaxError(line, f"number out of range: {text!r}")
    return value


def _lex_action(src: str, pos: int, line: int) -> tuple[list[_Token], int, bool]:
    """Tokens of the action starting at pos; returns them, the position after `}}`, and trim."""
    tokens: list[_Token] = []
    spaced = True
    while True:
        if pos >= len(src):
            raise GoSyntaxError(line, "unclosed action")
        if src.startswith("}}", pos):
            return tokens, pos + 2, False
        m = _TOKEN.match(src, pos)
        if m is None:
            raise GoSyntaxError(line, f"unexpected {src[pos]!r} in command")
        kind, text = m.lastgroup or "", m.group()
        pos = m.end()
        if kind == "space":
            line += text.count("\n")
            spaced = True
            if src.startswith("-}}", pos):  # ` -}}`: trim the text that follows
                return tokens, pos + 3, True
        else:
            tokens.append(_Token(kind, text, line, spaced))
            spaced = False


def _comment_end(src: str, pos: int, line: int) -> tuple[int, bool]:
    end = src.find("*/", pos)
    if end < 0:
        raise GoSyntaxError(line, "unclosed comment")
    after = end + 2
    if src.startswith("}}", after):
        return after + 2, False
    if src.startswith(" -}}", after):
        return after + 4, True
    raise GoSyntaxError(line, "comment ends before closing delimiter")


def _items(src: str) -> list[str | list[_Token]]:
    """Text (already trimmed) and the token lists of actions, in order."""
    items: list[str | list[_Token]] = []
    pos, line, trim_next = 0, 1, False
    while True:
        start = src.find("{{", pos)
        text = src[pos:] if start < 0 else src[pos:start]
        if trim_next:
            text = text.lstrip(_SPACE)
        if start >= 0 and src[start + 2:start + 3] == "-" and src[start + 3:start + 4] in tuple(_SPACE):
            text, inner = text.rstrip(_SPACE), start + 4
        else:
            inner = start + 2
        if text:
            items.append(text)
        if start < 0:
            return items
        line += src.count("\n", pos, start)
        if src.startswith("/*", inner):
            pos, trim_next = _comment_end(src, inner + 2, line)
        else:
            tokens, pos, trim_next = _lex_action(src, inner, line)
            items.append(tokens or [_Token("empty", "", line, True)])
        line += src.count("\n", start, pos)


# -- parsing -------------------------------------------------------------------------------------

class _Parser:
    def __init__(self, src: str) -> None:
        self.items = _items(src)
        self.at = 0
        self.defines: dict[str, list[Node]] = {}
        self.loops = 0

    def parse(self) -> Tree:
        root, stop = self.until_end(top=True)
        if stop is not None:
            raise GoSyntaxError(stop[0].line, f"unexpected {{{{{stop[0].value}}}}}")
        return Tree(root, self.defines)

    def until_end(self, top: bool = False) -> tuple[list[Node], list[_Token] | None]:
        """Nodes up to an `end` or `else` action (returned), or the end of the source."""
        nodes: list[Node] = []
        while self.at < len(self.items):
            item = self.items[self.at]
            self.at += 1
            if isinstance(item, str):
                nodes.append(Text(item))
                continue
            word = item[0].value if item[0].kind == "ident" else ""
            if word in ("end", "else"):
                return nodes, item
            if word == "define" and not top:
                raise GoSyntaxError(item[0].line, "unexpected {{define}} in command")
            node = self.action(item, word)
            if node is not None:
                nodes.append(node)
        return nodes, None

    def action(self, tokens: list[_Token], word: str) -> Node | None:
        line = tokens[0].line
        if tokens[0].kind == "empty":
            raise GoSyntaxError(line, "missing value for command")
        rest = tokens[1:]
        if word in ("if", "with"):
            return self.branch(word, rest, line)
        if word == "range":
            return self.loop(rest, line)
        if word in ("break", "continue"):
            if rest:
                raise GoSyntaxError(line, f"unexpected {rest[0].value!r} in {{{{{word}}}}}")
            if not self.loops:
                raise GoSyntaxError(line, f"{{{{{word}}}}} outside {{{{range}}}}")
            return Jump(word)
        if word in ("define", "block", "template"):
            return self.named(word, rest, line)
        return Action(_PipeParser(tokens, line).pipe(allow_decl=True))

    def body(self, line: int, keyword: str, allow_else: bool = True) -> tuple[list[Node], list[_Token]]:
        nodes, stop = self.until_end()
        if stop is None:
            raise GoSyntaxError(line, f"unexpected EOF: {{{{{keyword}}}}} has no {{{{end}}}}")
        if stop[0].value == "else" and not allow_else:
            raise GoSyntaxError(stop[0].line, "unexpected {{else}}")
        if stop[0].value == "end" and len(stop) > 1:
            raise GoSyntaxError(stop[0].line, f"unexpected {stop[1].value!r} in end")
        return nodes, stop

    def branch(self, kind: str, tokens: list[_Token], line: int) -> Branch:
        pipe = _PipeParser(tokens, line).pipe(allow_decl=True)
        body, stop = self.body(line, kind)
        orelse: list[Node] = []
        if stop[0].value == "else":
            chained = stop[1:]
            if chained and chained[0].kind == "ident" and chained[0].value == kind:
                # `{{ else if x }}` is `{{ else }}{{ if x }}...{{ end }}{{ end }}` with one shared end
                orelse = [self.branch(kind, chained[1:], chained[0].line)]
            elif chained:
                raise GoSyntaxError(stop[0].line, f"unexpected {chained[0].value!r} in else")
            else:
                orelse, stop = self.body(line, kind, allow_else=False)
        return Branch(kind, pipe, body, orelse)

    def loop(self, tokens: list[_Token], line: int) -> Loop:
        pipe = _PipeParser(tokens, line).pipe(allow_decl=True, range_decl=True)
        self.loops += 1
        body, stop = self.body(line, "range")
        self.loops -= 1
        orelse: list[Node] = []
        if stop[0].value == "else":
            if len(stop) > 1:
                raise GoSyntaxError(stop[0].line, f"unexpected {stop[1].value!r} in else")
            orelse, _ = self.body(line, "range", allow_else=False)
        return Loop(pipe, body, orelse)

    def named(self, word: str, tokens: list[_Token], line: int) -> Node | None:
        if not tokens or tokens[0].kind not in ("string", "raw"):
            raise GoSyntaxError(line, f"{{{{{word}}}}} needs a quoted template name")
        name = _literal(tokens[0])
        assert isinstance(name, str)
        pipe = _PipeParser(tokens[1:], line).pipe(allow_decl=False) if len(tokens) > 1 else None
        if word == "template":
            return Template(line, name, pipe)
        if word == "block" and pipe is None:
            raise GoSyntaxError(line, "{{block}} needs a pipeline")
        if word == "define" and pipe is not None:
            raise GoSyntaxError(line, "unexpected argument in {{define}}")
        loops, self.loops = self.loops, 0
        body, _ = self.body(line, word, allow_else=False)
        self.loops = loops
        self.defines[name] = body
        return Template(line, name, pipe) if word == "block" else None


def _literal(token: _Token) -> str | int | float:
    if token.kind == "raw":
        return token.value[1:-1]
    if token.kind == "string":
        return _unquote(token.value[1:-1], token.line)
    if token.kind == "char":
        text = _unquote(token.value[1:-1], token.line)
        if len(text) != 1:
            raise GoSyntaxError(token.line, f"malformed character constant: {token.value}")
        return ord(text)
    return _number(token.value, token.line)


class _PipeParser:
    """A pipeline's tokens to a Pipe: `[$x :=] command | command ...`."""

    def __init__(self, tokens: list[_Token], line: int) -> None:
        self.tokens = tokens
        self.at = 0
        self.line = line

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def next(self) -> _Token:
        token = self.peek()
        if token is None:
            raise GoSyntaxError(self.line, "unexpected end of action")
        self.at += 1
        return token

    def pipe(self, allow_decl: bool, range_decl: bool = False, inner: bool = False) -> Pipe:
        pipe = Pipe(self.line, [])
        if allow_decl:
            self.declaration(pipe, range_decl)
        while True:
            args: list[Arg] = []
            while (token := self.peek()) is not None and token.kind not in ("pipe", "rparen"):
                if args and not token.spaced:
                    raise GoSyntaxError(token.line, f"missing space before {token.value!r}")
                args.append(self.operand())
            if not args:
                raise GoSyntaxError(self.line, "missing value for command")
            pipe.cmds.append(Call(args))
            token = self.peek()
            if token is None or token.kind == "rparen":
                if token is not None and not inner:
                    raise GoSyntaxError(token.line, "unexpected right paren")
                return pipe
            self.next()

    def declaration(self, pipe: Pipe, range_decl: bool) -> None:
        names, at = [], self.at
        while (token := self.peek()) is not None and token.kind == "var":
            names.append(self.next().value)
            op = self.peek()
            if op is not None and op.kind == "comma" and range_decl and len(names) == 1:
                self.next()
                continue
            if op is not None and op.kind in ("declare", "assign") and (len(names) == 1 or range_decl):
                self.next()
                pipe.decl, pipe.assign = names, op.kind == "assign"
                return
            break
        self.at = at  # not a declaration: the variables are operands

    def operand(self) -> Arg:
        token = self.next()
        node = self.term(token)
        names: list[str] = []
        while (more := self.peek()) is not None and more.kind == "field" and not more.spaced:
            names.append(self.next().value[1:])
        if not names:
            return node
        if isinstance(node, Field):
            return Field(node.names + tuple(names))
        if isinstance(node, Var):
            return Var(node.name, node.names + tuple(names))
        if isinstance(node, (Const, Dot, Ident)):
            raise GoSyntaxError(token.line, f"unexpected . after term {token.value!r}")
        return Chain(node, tuple(names))

    def term(self, token: _Token) -> Arg:
        kind = token.kind
        if kind == "field":
            return Field((token.value[1:],))
        if kind == "var":
            return Var(token.value)
        if kind == "dot":
            return Dot()
        if kind == "lparen":
            inner = self.pipe(allow_decl=False, inner=True)
            if self.next().kind != "rparen":
                raise GoSyntaxError(token.line, "unclosed left paren")
            return inner
        if kind == "ident":
            if token.value in ("true", "false"):
                return Const(token.value == "true")
            if token.value == "nil":
                return Const(None)
            if token.value in _KEYWORDS:
                raise GoSyntaxError(token.line, f"unexpected {token.value!r} in command")
            return Ident(token.value)
        if kind in ("string", "raw", "char", "number"):
            return Const(_literal(token))
        raise GoSyntaxError(token.line, f"unexpected {token.value!r} in operand")


def parse(src: str) -> Tree:
    """The tree of a Go template, or GoSyntaxError naming the line."""
    return _Parser(src).parse()
