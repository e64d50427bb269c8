"""Property-based fuzzing of the whole API from the server's own /openapi.json.

schemathesis turns every documented operation into a Hypothesis strategy, for requests that
fit the schema (positive) and requests that break it (negative), and holds each answer to the
document: no 5xx, a documented status code, a body that matches the documented schema, the
documented content type. After every case the server must still answer /api/version.

The server is real (its own ROOST_HOME, the real model pulled), and half the cases of each
route that takes a model name it, so generation reaches a real runner. Each case is tamed
first (see `tame`) only where the run would otherwise leave this machine (a registry host, an
engine's URL), destroy the model the other cases need, or cost minutes: answers are capped at
4 tokens and load options (num_ctx) dropped, so one loaded runner serves every case. The run
is bounded: a fixed number of examples per operation and mode, a fixed seed, and a deadline
shared out among the operations (see `Run`). FUZZ_EXAMPLES, FUZZ_SEED and FUZZ_DEADLINE make a
longer or different run, e.g. `FUZZ_EXAMPLES=80 FUZZ_SEED=11 FUZZ_DEADLINE=1500 pytest -s
--timeout=1900 tests/server/test_fuzz.py`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests  # schemathesis's transport
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import MODEL, Server, own_pulled_server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))  # per operation and mode
SEED = int(os.environ.get("FUZZ_SEED", "20240611"))
DEADLINE = float(os.environ.get("FUZZ_DEADLINE", "60"))  # seconds for all the cases
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance,
          content_type_conformance]
COPY = "fuzz-copy"  # what destructive cases may delete, remade before each of them
MAX_TOKENS = 4
# Routes whose cases name the real model half the time, so they reach a runner.
_MODEL_ROUTES = ("/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show",
                 "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models/start",
                 "/v1/models/stop", "/v1/messages")
_LOAD_OPTIONS = ("num_ctx", "num_batch", "num_thread", "num_gpu", "main_gpu")


@dataclass
class Run:
    """The whole run's tally, and its clock: each (operation, mode) gets an equal share of the
    time left, so a slow machine runs fewer cases of each operation rather than none of the
    last ones; the first case of each always runs."""

    server: Server
    session: requests.Session
    started: float = field(default_factory=time.monotonic)
    cases: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    share_ends: float = 0.0
    share_cases: int = 0

    def fail(self, report: str) -> None:
        print(report, flush=True)  # as it happens, for a long run (`-s`)
        self.failures.append(report)

    def start_share(self, shares_left: int) -> None:
        now = time.monotonic()
        self.share_ends = now + max(0.0, self.started + DEADLINE - now) / shares_left
        self.share_cases = 0

    def over(self) -> bool:
        return self.share_cases > 0 and time.monotonic() > self.share_ends


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own: the fuzzer creates and deletes models, threads, presets, engines."""
    with own_pulled_server(Path(tmp_path_factory.mktemp("fuzz-home"))) as server:
        yield server


def _options(body: dict[str, Any], key: str, generates: bool) -> None:
    options = body.get(key)
    if isinstance(options, dict):
        for name in _LOAD_OPTIONS:
            options.pop(name, None)
        if generates:
            options["num_predict"] = MAX_TOKENS


def tame(case: Any, n: int, run: Run) -> None:
    """Pin what would leave this machine, destroy the shared model, or run for minutes."""
    path = case.operation.path
    body = case.body if isinstance(case.body, dict) else None
    if path in ("/v1/models/{model}",) and case.method.upper() == "DELETE":
        _remake_copy(run)
        case.path_parameters = {"model": COPY}
    if body is None:
        return
    generates = path in ("/api/generate", "/api/chat", "/v1/chat/completions", "/v1/completions",
                         "/v1/messages")
    _options(body, "options", generates)
    _options(body, "parameters", False)
    for name in _LOAD_OPTIONS + ("ctx_len",):
        body.pop(name, None)  # OpenAI's extra fields and Cortex's ctx_len: load options too
    if path.startswith("/v1/") and generates:
        body["max_tokens"] = MAX_TOKENS
        body.pop("max_completion_tokens", None)
        body.pop("num_predict", None)
    if path in _MODEL_ROUTES and n % 2 == 0:
        body["model"] = MODEL
        if path in ("/api/generate", "/api/chat"):
            body.setdefault("options", {"num_predict": MAX_TOKENS})
    if path in ("/api/pull", "/api/push", "/v1/models/pull"):
        body["model"] = "no-such-model"  # on the default registry host: a 404, no network
        body.pop("name", None)
    if path == "/v1/engines":
        body["url"] = "http://127.0.0.1:9/v1"  # nothing listens there; never another host
    if path == "/api/delete":
        _remake_copy(run)
        body["model"], body["name"] = COPY, COPY
    if path == "/api/create":
        body["model"] = "fuzz-created"
        if n % 2 == 0:
            body["from"] = MODEL
    if path == "/api/copy":
        body["destination"] = COPY


def _remake_copy(run: Run) -> None:
    with run.server.client() as c:
        c.post("/api/copy", json={"source": MODEL, "destination": COPY})


class _ShareSpent(Exception):
    """Ends an operation's cases once its share of the time is spent (skipping them one by one
    would still pay Hypothesis for generating each)."""


def _one(case: Any, run: Run, label: str) -> None:
    if run.over():
        raise _ShareSpent
    tame(case, run.cases[label], run)
    run.cases[label] += 1
    run.share_cases += 1
    response = case.call(session=run.session, timeout=60)
    try:
        case.validate_response(response, checks=CHECKS)
    except FailureGroup as group:
        for failure in group.exceptions:
            run.fail(f"{label}: {failure.title}: {failure.message.splitlines()[0:2]} "
                                f"-> {response.status_code} {response.text[:200]!r}\n"
                                f"    {case.as_curl_command()[:400]}")
    alive = run.session.get(f"{run.server.url}/api/version", timeout=10)
    if alive.status_code != 200:
        run.fail(f"{label}: the server did not answer /api/version after "
                            f"{case.as_curl_command()[:400]}")


def _fuzz(operation: Any, mode: GenerationMode, run: Run) -> None:
    label = operation.label

    @seed(SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(case=operation.as_strategy(generation_mode=mode))
    def cases(case: Any) -> None:
        _one(case, run, label)

    started = time.monotonic()
    with contextlib.suppress(Unsatisfiable, _ShareSpent):
        cases()
    run.seconds[label] += time.monotonic() - started


def _modes(operation: Any) -> tuple[GenerationMode, ...]:
    """Negative cases need something a schema can forbid: a body or a query parameter. (A
    path parameter is any string; Hypothesis would spend seconds finding none.)"""
    if len(operation.body) or len(operation.query):
        return (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    return (GenerationMode.POSITIVE,)


def test_the_api_holds_to_its_own_document(fuzz_server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    # The routes that reach the runner last: they take the time the quick ones leave.
    operations.sort(key=lambda op: op.path in _MODEL_ROUTES)
    plan = [(operation, mode) for operation in operations for mode in _modes(operation)]
    run = Run(fuzz_server, requests.Session())
    try:
        for i, (operation, mode) in enumerate(plan):
            run.start_share(len(plan) - i)
            _fuzz(operation, mode, run)
    finally:
        run.session.close()
    elapsed = time.monotonic() - run.started
    total = sum(run.cases.values())
    print(f"\nfuzz: {total} cases over {len(run.cases)} operations in {elapsed:.0f} s "
          f"(at most {len(plan) * EXAMPLES}), seed {SEED}")
    for label, seconds in run.seconds.most_common(12):
        print(f"  {label}: {run.cases[label]} cases, {seconds:.1f} s")
    assert not run.failures, f"{len(run.failures)} failures in {total} cases:\n" + "\n".join(
        run.failures[:40])
    assert set(run.cases) == {op.label for op in operations}, "an operation was never fuzzed"
