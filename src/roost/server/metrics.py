"""`GET /metrics`: what an operator's Prometheus scrapes, in its text format.

Each app has its own registry (nothing here is a process-wide singleton, so tests may build
many apps). Three sources feed it:
- the request counter, an ASGI middleware that labels each answer with its route's template
  (`/api/blobs/{digest}`, never the raw path, so a client cannot grow the label set) and status;
- generations, through one hook in `inference.generate` (`watch`): tokens, time to first token
  and decode rate, read off each answer's last chunk. The hook finds this app's metrics in a
  context variable the middleware sets, so no route has to pass them along;
- the scheduler's state, read when scraped (queue depth, each loaded model's memory, runner
  crashes), rather than pushed from every place that changes it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import fastapi.routing
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roost.api.responses import ErrorResponse, errors
from roost.core import Done, Piece
from roost.scheduler.scheduler import Scheduler, State

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 35.0, 50.0, 75.0, 100.0, 150.0, 250.0, 500.0, 1000.0)
UNMATCHED = "unmatched"  # the route label of a path no route serves (404s)


class Metrics:
    """One app's registry and the instruments the middleware and the generation hook feed."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter("roost_http_requests", "HTTP requests answered, by route "
                                "template and status", ["route", "status"], registry=reg)
        self.prompt_tokens = Counter("roost_prompt_tokens", "Prompt tokens of generations, "
                                     "the cached prefix included", ["model"], registry=reg)
        self.prompt_eval_tokens = Counter("roost_prompt_eval_tokens", "Prompt tokens evaluated "
                                          "(not served from the KV cache)", ["model"], registry=reg)
        self.generated_tokens = Counter("roost_generated_tokens", "Tokens generated",
                                        ["model"], registry=reg)
        self.ttft = Histogram("roost_time_to_first_token_seconds", "From a generation's start "
                              "(waiting and loading included) to its first token", ["model"],
                              buckets=TTFT_BUCKETS, registry=reg)
        self.decode_rate = Histogram("roost_decode_tokens_per_second", "Decode speed of each "
                                     "generation (eval_count / eval_duration)", ["model"],
                                     buckets=RATE_BUCKETS, registry=reg)
        reg.register(_SchedulerState(scheduler))

    def finished(self, model: str, done: Done) -> None:
        self.prompt_tokens.labels(model).inc(done.whole_prompt)
        self.prompt_eval_tokens.labels(model).inc(done.prompt_eval_count)
        self.generated_tokens.labels(model).inc(done.eval_count)
        if done.eval_count > 0 and done.eval_ns > 0:
            self.decode_rate.labels(model).observe(done.eval_count / (done.eval_ns / 1e9))


_current: ContextVar[Metrics | None] = ContextVar("roost_metrics", default=None)


class Generation:
    """One generation as its chunks pass: the first token's time, then the last chunk's counts."""

    def __init__(self, model: str) -> None:
        self.metrics = _current.get()
        self.model = model
        self.started = time.perf_counter()
        self.first_seen = False

    def see(self, item: Piece | Done) -> None:
        if self.metrics is None:
            return  # not inside a request of an app with metrics (a test's own loop)
        done = item if isinstance(item, Done) else None
        if not self.first_seen and (done is None or done.eval_count > 0):
            self.first_seen = True
            self.metrics.ttft.labels(self.model).observe(time.perf_counter() - self.started)
        if done is not None:
            self.metrics.finished(self.model, done)


def watch(model: str) -> Generation:
    """Start watching a generation of `model`; call `see` on each chunk it yields."""
    return Generation(model)


class _SchedulerState(Collector):
    """Read at scrape time, on the event loop's thread (the route is async), as the scheduler
    expects of everything that looks at it."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("roost_queue_depth", "Requests waiting: for their model to "
                                "load, or for a free sequence on its runner",
                                value=self.scheduler.waiting())
        memory = GaugeMetricFamily("roost_model_memory_bytes", "Each loaded model's memory as "
                                   "the scheduler counts it: weights, KV cache, compute buffers "
                                   "(names that share weights share one runner)", labels=["model"])
        for slot in self.scheduler.slots():
            if slot.runner is None or slot.state not in (State.READY, State.DRAINING):
                continue
            for loaded in slot.names.values():
                memory.add_metric([str(loaded.ref.name)], slot.need or slot.runner.size)
        yield memory
        yield CounterMetricFamily("roost_runner_restarts", "Runners that died while loaded "
                                  "(the next request loads a fresh one)",
                                  value=self.scheduler.runner_crashes)


class RequestCounter:
    """Pure ASGI middleware: count each answer by route template and status, and make this
    app's metrics visible to the generation hook for the request's duration."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: list[BaseRoute]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes
        self._flat: list[Any] | None = None  # every route with its whole path, made when needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees if the app fails before it answers

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        token = _current.set(self.metrics)
        try:
            await self.app(scope, receive, counted)
        finally:
            _current.reset(token)
            self.metrics.requests.labels(self._route(scope), str(status)).inc()

    def _route(self, scope: Scope) -> str:
        """The router leaves its match in the scope; a request refused before routing (401,
        403) is matched here, so it is counted under the route it asked for."""
        route = scope.get("route") or self._match(scope)
        return str(getattr(route, "path_format", None) or getattr(route, "path", None)
                   or UNMATCHED)

    def _match(self, scope: Scope) -> Any:
        if self._flat is None:  # FastAPI >= 0.160 keeps included routers whole: flatten them
            flatten = getattr(fastapi.routing, "iter_route_contexts", list)
            self._flat = list(flatten(self.routes))
        matches = [(r, r.matches(scope)[0]) for r in self._flat]
        full = [r for r, m in matches if m is Match.FULL]
        partial = [r for r, m in matches if m is Match.PARTIAL]  # another method's route
        return next(iter(full + partial), None)


router = APIRouter(responses=errors(ErrorResponse))
_TEXT: dict[int | str, dict[str, Any]] = {200: {
    "description": "Prometheus text exposition format",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}}


@router.get("/metrics", response_class=Response, responses=_TEXT)
async def scrape(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI) -> None:
    """The registry on `app.state`, the route, and the counting middleware (added last, so it
    is outermost and counts what the other middleware refuse too)."""
    app.state.metrics = metrics = Metrics(app.state.scheduler)
    app.include_router(router)
    app.add_middleware(RequestCounter, metrics=metrics, routes=app.router.routes)


__all__ = ["Generation", "Metrics", "RequestCounter", "install", "router", "watch"]
