"""One streamed answer on the terminal: thinking apart and dimmed, the text wrapped, tool calls readable.

Tokens go out with plain writes as they come (no rich on the per-token path). Colour (the dim
of the thinking) only on a terminal and never with NO_COLOR.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from roost.cli.render import WrapWriter, use_color

DIM, RESET = "\x1b[2m", "\x1b[0m"


class AnswerPrinter:
    def __init__(self, out: IO[str] = sys.stdout, width: int | None = None,
                 hide_thinking: bool = False) -> None:
        self.out = out
        self.width = width
        self.hide_thinking = hide_thinking
        self.color = use_color(out)
        self.text = WrapWriter(out, width)
        self.thinking: WrapWriter | None = None
        self.thought = False  # a thinking block was shown and closed
        self.wrote = ""  # the last character written, to end the answer on a new line

    def chunk(self, message: dict[str, Any]) -> None:
        """One /api/chat message delta: thinking, content and tool calls, in that order."""
        thinking = message.get("thinking") or ""
        if thinking and not self.hide_thinking:
            if self.thinking is None:
                self._raw(("\x1b[1m" if self.color else "") + "Thinking..." +
                          (RESET if self.color else "") + "\n" + (DIM if self.color else ""))
                self.thinking = WrapWriter(self.out, self.width)
            self.thinking.write(thinking)
            self.wrote = thinking[-1]
        content = message.get("content") or ""
        if content:
            self._end_thinking()
            self.text.write(content)
            self.wrote = content[-1]
        for call in message.get("tool_calls") or []:
            self._end_thinking()
            self.text.close()
            fn = call.get("function") or {}
            args = json.dumps(fn.get("arguments") or {})  # escaped: no bidi or control text
            lead = "" if self.wrote in ("", "\n") else "\n"
            self._raw(f"{lead}Tool call: {fn.get('name', '?')}({args})\n")
            self.wrote = "\n"

    def _end_thinking(self) -> None:
        if self.thinking is not None and not self.thought:
            self.thinking.close()
            self._raw(("\n" if self.wrote != "\n" else "") + (RESET if self.color else "") +
                      "...done thinking.\n\n")
            self.wrote, self.thought = "\n", True

    def abort(self) -> None:
        """The answer was cut off: drop the word held back for wrapping, end any dim."""
        self.text.word = ""
        if self.thinking is not None:
            self.thinking.word = ""
        if self.color:
            self._raw(RESET)
        self.out.flush()

    def close(self) -> None:
        self._end_thinking()
        self.text.close()
        if self.wrote not in ("", "\n"):
            self._raw("\n")
        self.out.flush()

    def _raw(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
