"""`roost run --experimental`: the chat as an agent loop, as Ollama's run has it.

The model is offered built-in tools (roost.cli.agent_tools) through /api/chat's `tools`. When
it calls one, the call is shown and the user approves it before it runs; the result (or the
denial) goes back as a `tool` message and the model goes on, until it answers without a call
or MAX_ROUNDS pass. An "always" approval covers that exact call (tool name and arguments,
compared as whole strings) and nothing else: approving `cat notes.txt` says nothing about
`cat notes.txt; rm -rf ~` or `cat $(touch pwned)`, so no prefix or word matching is done.
"""

from __future__ import annotations

import json
import sys
from typing import IO, TYPE_CHECKING, Any

from roost.cli import agent_tools

if TYPE_CHECKING:
    from roost.cli.session import Session

MAX_ROUNDS = 10
DENIED = "the user denied this call"
PREVIEW_LINES = 12


def run_agent(session: Session, text: str, websearch: bool = False, yolo: bool = False) -> None:
    """Answer `text` with tools and return; with no text, read prompts until Ctrl+D or /bye."""
    import click

    if websearch and agent_tools.search_url("") is None:
        raise click.UsageError(f"--experimental-websearch needs a search endpoint: "
                               f"{agent_tools.SEARCH_HELP}")
    tools: list[dict[str, Any]] | None = agent_tools.schemas(websearch)
    if "tools" not in (session.client.show(session.model).get("capabilities") or []):
        sys.stderr.write(f"Note: {session.model} does not support tools; it answers without them.\n")
        tools = None
    if yolo:
        sys.stderr.write("Warning: --experimental-yolo: tool calls run without asking you first.\n")
    agent = Agent(session, tools, websearch, Approver(yolo))
    if text:
        agent.turn(text)
    else:
        agent.repl()


def call_key(name: str, args: dict[str, Any]) -> str:
    """The whole call as one string: approvals compare these for equality, nothing looser."""
    return name + " " + json.dumps(args, sort_keys=True, ensure_ascii=False)


def describe(name: str, args: dict[str, Any]) -> str:
    """What the user is asked about: a shell command as it will run, other calls as name(args).
    Characters that do not print (newlines, escape sequences, bidi overrides) are shown escaped:
    the model's text must not be able to redraw the question into a harmless-looking one."""
    text = str(args.get("command", "")) if name == "run_shell" else f"{name}({json.dumps(args)})"
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


class Approver:
    """Asks on the terminal (stdin if it is one, else /dev/tty); with no terminal, denies."""

    def __init__(self, yolo: bool = False) -> None:
        self.yolo = yolo
        self.always: set[str] = set()

    def approve(self, name: str, args: dict[str, Any]) -> bool:
        key = call_key(name, args)
        if self.yolo or key in self.always:
            return True
        answer = self._ask(describe(name, args))
        if answer in ("a", "always"):
            self.always.add(key)
        return answer in ("y", "yes", "a", "always")

    def _ask(self, shown: str) -> str:
        """The first valid answer; end of input is a no."""
        question = f"Run `{shown}`? [y]es / [n]o / [a]lways for this exact command line: "
        tty: IO[str] | None = None
        if sys.stdin.isatty():
            ask, out = sys.stdin, sys.stderr
        else:
            try:
                tty = ask = out = open("/dev/tty", "r+")  # noqa: SIM115 - closed below
            except OSError:
                sys.stderr.write(f"No terminal to ask whether to run `{shown}` on "
                                 "(--experimental-yolo runs tools without asking).\n")
                return "n"
        try:
            while True:
                out.write(question)
                out.flush()
                line = ask.readline()
                if not line:
                    out.write("\n")
                    return "n"
                answer = line.strip().lower()
                if answer in ("y", "yes", "n", "no", "a", "always"):
                    return answer
        finally:
            if tty is not None:
                tty.close()


class Agent:
    def __init__(self, session: Session, tools: list[dict[str, Any]] | None, websearch: bool,
                 approver: Approver) -> None:
        self.session = session
        self.tools = tools
        self.websearch = websearch
        self.approver = approver

    def turn(self, text: str) -> None:
        """One user prompt through as many tool rounds as the model needs (up to MAX_ROUNDS).
        Interrupted or failed, it leaves nothing behind in the conversation, as Session.ask."""
        messages = self.session.messages
        start = len(messages)
        messages.append({"role": "user", "content": text})
        try:
            for _ in range(MAX_ROUNDS):
                calls = self._reply()
                if not calls:
                    return
                for call in calls:
                    self._call(call)
            sys.stderr.write(f"Stopped: still calling tools after {MAX_ROUNDS} rounds.\n")
        except BaseException:
            del messages[start:]
            raise

    def _reply(self) -> list[dict[str, Any]]:
        """Stream one answer, with the tools offered; keep it in the conversation; its calls."""
        reply: dict[str, Any] = {"role": "assistant", "content": ""}
        self.session.stream(reply, tools=self.tools)
        self.session.messages.append(reply)
        return list(reply.get("tool_calls") or [])

    def _call(self, call: dict[str, Any]) -> None:
        fn = call.get("function") or {}
        name = str(fn.get("name", ""))
        raw = fn.get("arguments")
        args: dict[str, Any] = raw if isinstance(raw, dict) else {}
        result = agent_tools.check(name, args, self.websearch)
        if result is None:
            if self.approver.approve(name, args):
                result = agent_tools.run(name, args)
                _preview(result)
            else:
                result = DENIED
                sys.stderr.write("Not run: denied.\n")
        self.session.messages.append({"role": "tool", "content": result, "tool_name": name})

    def repl(self) -> None:
        """A plain prompt loop: Ctrl+D or /bye leaves; Ctrl+C stops an answer, not the loop."""
        from roost.api.client import ResponseError

        while True:
            try:
                line = input(">>> ")
            except EOFError:
                sys.stdout.write("\n")
                return
            except KeyboardInterrupt:
                sys.stdout.write("\nUse Ctrl+D or /bye to leave.\n")
                continue
            text = line.strip()
            if text in ("/bye", "/exit"):
                return
            if not text:
                continue
            try:
                self.turn(text)
            except KeyboardInterrupt:
                sys.stdout.write("\n")
            except ResponseError as exc:
                sys.stderr.write(f"Error: {exc}\n")


def _preview(result: str) -> None:
    """The user sees what the model will read, its first lines at least."""
    lines = result.splitlines() or [""]
    more = len(lines) - PREVIEW_LINES
    shown = "\n".join(lines[:PREVIEW_LINES]) + (f"\n... ({more} more lines)" if more > 0 else "")
    sys.stdout.write(shown + "\n\n")
    sys.stdout.flush()
