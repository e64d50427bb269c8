"""Check a request's raw GBNF grammar before it reaches a runner.

llama.cpp parses GBNF when a sequence's sampler chain is built, in the runner. Its parser
refuses most bad grammars cleanly, but some it accepts and then spends without bound (a
repetition `{2,1}` ran a test process out of memory), and llama-cpp-python has no parser of
its own to call from the server (`LlamaGrammar.from_string` only stores the text). So the
server checks the syntax here, with llama.cpp's rules, and answers 400 before loading or
queueing anything; the runner's parse stays the final word on what the sampler accepts.
"""

from __future__ import annotations

import re

MAX_GRAMMAR_CHARS = 256 * 1024
MAX_REPEAT = 10_000  # llama.cpp expands {m,n} into copies of the element: bound the copies

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_REPEAT = re.compile(r"\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}")
_ESCAPES = {"x": 2, "u": 4, "U": 8}


class GrammarSyntaxError(ValueError):
    pass


def check(text: str) -> None:
    """Raise GrammarSyntaxError with the reason and position if `text` is not valid GBNF."""
    if len(text) > MAX_GRAMMAR_CHARS:
        raise GrammarSyntaxError(f"grammar is longer than {MAX_GRAMMAR_CHARS} characters")
    parser = _Parser(text)
    parser.rules()
    if "root" not in parser.defined:
        raise GrammarSyntaxError("grammar has no 'root' rule")
    missing = sorted(parser.used - parser.defined)
    if missing:
        raise GrammarSyntaxError(f"grammar uses undefined rule '{missing[0]}'")


class _Parser:
    """Recursive descent over GBNF: rules are `name ::= alternates`, one per line, and a
    newline continues a rule only inside parentheses or after `::=` or `|`."""

    def __init__(self, text: str) -> None:
        self.text, self.pos = text, 0
        self.defined: set[str] = set()
        self.used: set[str] = set()

    def fail(self, what: str) -> GrammarSyntaxError:
        line = self.text.count("\n", 0, self.pos) + 1
        return GrammarSyntaxError(f"invalid grammar at line {line}: {what}")

    def space(self, newlines: bool) -> None:
        t = self.text
        while self.pos < len(t):
            c = t[self.pos]
            if c == "#":
                while self.pos < len(t) and t[self.pos] not in "\r\n":
                    self.pos += 1
            elif c in " \t" or (newlines and c in "\r\n"):
                self.pos += 1
            else:
                return

    def rules(self) -> None:
        self.space(True)
        while self.pos < len(self.text):
            name = self.name()
            self.space(False)
            if not self.text.startswith("::=", self.pos):
                raise self.fail(f"expected '::=' after '{name}'")
            self.pos += 3
            self.space(True)
            self.alternates(nested=False)
            self.defined.add(name)
            self.space(True)

    def name(self) -> str:
        m = _NAME.match(self.text, self.pos)
        if not m:
            raise self.fail("expected a rule name")
        self.pos = m.end()
        return m.group()

    def alternates(self, nested: bool) -> None:
        self.sequence(nested)
        while self.peek() == "|":
            self.pos += 1
            self.space(True)
            self.sequence(nested)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def sequence(self, nested: bool) -> None:
        has_element = False
        while True:
            c = self.peek()
            if c in ("", "|", ")", "\n", "\r"):
                return
            if c in "*+?{":
                if not has_element:
                    raise self.fail(f"'{c}' with nothing before it")
                self.repetition()
            else:
                self.element(nested)
                has_element = True
            self.space(nested)

    def element(self, nested: bool) -> None:
        c = self.peek()
        if c == '"':
            self.quoted('"')
        elif c == "[":
            self.pos += 1
            if self.peek() == "^":
                self.pos += 1
            self.quoted("]", opened=True)
        elif c == "(":
            self.pos += 1
            self.space(True)
            self.alternates(nested=True)
            if self.peek() != ")":
                raise self.fail("expected ')'")
            self.pos += 1
        elif c == ".":
            self.pos += 1
        elif c in ("<", "!"):
            self.token()
        else:
            self.used.add(self.name())

    def quoted(self, end: str, opened: bool = False) -> None:
        t = self.text
        if not opened:
            self.pos += 1
        while self.pos < len(t) and t[self.pos] != end:
            if t[self.pos] == "\\":
                self.pos += 1 + _ESCAPES.get(t[self.pos + 1: self.pos + 2], 1)
            else:
                self.pos += 1
        if self.pos >= len(t):
            raise self.fail(f"unterminated {'string' if end == chr(34) else 'character class'}")
        self.pos += 1

    def token(self) -> None:
        if self.peek() == "!":
            self.pos += 1
        end = self.text.find(">", self.pos)
        if self.peek() != "<" or end < 0:
            raise self.fail("expected a token '<...>'")
        self.pos = end + 1

    def repetition(self) -> None:
        if self.peek() in "*+?":
            self.pos += 1
            return
        m = _REPEAT.match(self.text, self.pos)
        if not m:
            raise self.fail("expected '{min}', '{min,}' or '{min,max}'")
        low = int(m.group(1))
        high = int(m.group(3)) if m.group(3) else (low if m.group(2) is None else None)
        if high is not None and high < low:
            raise self.fail(f"repetition {{{low},{high}}} has max below min")
        if max(low, high or 0) > MAX_REPEAT:
            raise self.fail(f"repetition counts above {MAX_REPEAT} are not supported")
        self.pos = m.end()
