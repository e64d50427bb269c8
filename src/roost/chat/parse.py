"""Split a model's streamed output into content, thinking and tool calls.

Qwen-family templates (and many others) wrap tool calls in `<tool_call>{json}</tool_call>`
and reasoning in `<think>…</think>`. The parser works on the stream: text outside tags goes
out at once, except a tail that could still be the start of a tag, which waits for the next
piece. A tool call is emitted whole, when its closing tag arrives.

Some models (qwen2.5-coder among them) answer a tool request with bare JSON, sometimes in
a code fence, instead of the tags. When tools were offered and the answer opens that way,
it is held while it can still be such a call (it names no other tool, and is short) and
becomes tool calls at the end if it names an offered tool; otherwise it streams as text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from roost.textscan import partial_suffix

THINK = ("<think>", "</think>")
MAX_HELD = 4096  # characters of a possible bare tool call held back before it streams as text
_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
TOOL = ("<tool_call>", "</tool_call>")


@dataclass
class Parsed:
    content: str = ""
    thinking: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.content or self.thinking or self.tool_calls or self.logprobs)


class OutputParser:
    def __init__(self, tools: bool, think: bool, starts_thinking: bool = False,
                 tool_names: frozenset[str] = frozenset()) -> None:
        self.tags = [t for t, on in ((TOOL, tools), (THINK, think)) if on]
        self.tool_names = tool_names if tools else frozenset()
        self.started = False  # has any content gone out yet
        self.bare_json = False  # holding an answer that may be a bare JSON tool call
        self.buffer = ""
        self.inside: tuple[str, str] | None = THINK if (think and starts_thinking) else None
        self.index = 0
        self.after_think = False  # newlines right after </think> are layout, not content

    def feed(self, text: str) -> Parsed:
        self.buffer += text
        if self.after_think:
            self.buffer = self.buffer.lstrip("\n")
            self.after_think = not self.buffer
        out = Parsed()
        if self.tool_names and not self.started and self.inside is None:
            head = self.buffer.lstrip()
            if (not head or head[0] in "{[" or head.startswith("```") or "```".startswith(head)) \
                    and self._may_be_bare_call(head):
                self.bare_json = bool(head)
                return out  # wait: this may be a tool call without tags
            self.bare_json = False
            self.started = True
        while self.buffer:
            if self.inside is None:
                if not self._outside(out):
                    break
            elif not self._within(out):
                break
        return out

    def _may_be_bare_call(self, head: str) -> bool:
        """Hold an answer back only while it can still become a call of an offered tool:
        JSON (or code) that names another tool, or is long already, streams as text."""
        if len(head) > MAX_HELD:
            return False
        name = _NAME.search(head)
        return name is None or name.group(1) in self.tool_names

    def finish(self) -> Parsed:
        """The stream ended: whatever is held back is plain text (or unfinished thinking)."""
        out = Parsed()
        if self.bare_json and self.inside is None:
            calls = parse_bare_calls(self.buffer, self.tool_names)
            if calls:
                self.buffer = ""
                out.tool_calls = calls
                return out
        if self.inside == THINK:
            out.thinking = self.buffer
        elif self.inside == TOOL:
            out.content = TOOL[0] + self.buffer  # an unterminated call stays visible
        else:
            out.content = self.buffer
        self.buffer = ""
        return out

    def _outside(self, out: Parsed) -> bool:
        starts = [(self.buffer.find(open_), (open_, close)) for open_, close in self.tags]
        found = [(i, tag) for i, tag in starts if i >= 0]
        if found:
            i, tag = min(found)
            out.content += self.buffer[:i]
            self.started = self.started or bool(out.content.strip())
            self.buffer = self.buffer[i + len(tag[0]):]
            self.inside = tag
            return True
        keep = partial_suffix(self.buffer, [open_ for open_, _ in self.tags])
        out.content += self.buffer[: len(self.buffer) - keep]
        self.started = self.started or bool(out.content.strip())
        self.buffer = self.buffer[len(self.buffer) - keep:]
        return False

    def _within(self, out: Parsed) -> bool:
        assert self.inside is not None
        close = self.inside[1]
        i = self.buffer.find(close)
        if i < 0:
            if self.inside == THINK:  # thinking streams as it comes
                keep = partial_suffix(self.buffer, [close])
                out.thinking += self.buffer[: len(self.buffer) - keep]
                self.buffer = self.buffer[len(self.buffer) - keep:]
            return False
        body, self.buffer = self.buffer[:i], self.buffer[i + len(close):]
        if self.inside == THINK:
            out.thinking += body
            self.buffer = self.buffer.lstrip("\n")
            self.after_think = not self.buffer
        else:
            call = parse_tool_call(body, self.index)
            if call is None:
                out.content += TOOL[0] + body + TOOL[1]
            else:
                out.tool_calls.append(call)
                self.index += 1
        self.inside = None
        return True


def parse_tool_call(body: str, index: int) -> dict[str, Any] | None:
    """`{"name": ..., "arguments": {...}}` to Ollama's tool call; None if it is not one."""
    try:
        data = json.loads(body.strip())
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    args = data.get("arguments", data.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return {"function": {"index": index, "name": data["name"], "arguments": args}}


def parse_bare_calls(text: str, names: frozenset[str]) -> list[dict[str, Any]]:
    """A whole answer that is one JSON call (or a list of them) naming offered tools."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").strip()
        body = body[4:] if body.startswith("json") else body
    try:
        data = json.loads(body)
    except ValueError:
        return []
    items = data if isinstance(data, list) else [data]
    calls = []
    for i, item in enumerate(items):
        call = parse_tool_call(json.dumps(item), i)
        if call is None or call["function"]["name"] not in names:
            return []
        calls.append(call)
    return calls

