"""The OpenAPI document says what the server sends: each route's errors in its dialect's shape.

Regression for what the fuzzer (test_fuzz.py) first found: routes answered 400 and 404 where
the document listed only 200 and FastAPI's 422, which Roost never sends.
"""

from __future__ import annotations

from typing import Any

from roost.server.cortex import PREFIXES as CORTEX_PREFIXES
from tests.conftest import Server


def _error_schema(path: str, method: str) -> str:
    if path.startswith(CORTEX_PREFIXES):
        return "CortexError"
    if path.startswith("/v1/messages"):
        return "AnthropicError"
    if path.startswith("/v1/"):
        return "OpenAIError"
    return "ErrorResponse"


def test_every_route_documents_its_errors_and_no_422(server: Server) -> None:
    with server.client() as c:
        doc: dict[str, Any] = c.get("/openapi.json").json()
    checked = 0
    for path, operations in doc["paths"].items():
        if path == "/":
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            for status in ("4XX", "5XX"):
                schema = responses[status]["content"]["application/json"]["schema"]
                want = _error_schema(path, method)
                assert schema == {"$ref": f"#/components/schemas/{want}"}, (method, path, status)
            checked += 1
    assert checked > 40


def test_each_dialect_errs_in_the_documented_shape(server: Server) -> None:
    with server.client() as c:
        assert set(c.post("/api/copy", json={"source": "no-such", "destination": "x"}).json()) \
            == {"error"}
        assert set(c.get("/v1/threads/no-such").json()) == {"message"}
        assert set(c.request("DELETE", "/v1/models/no-such").json()["error"]) \
            == {"message", "type", "param", "code"}
        r = c.put("/v1/presets/x", content=b"\0")  # the fuzzer's first negative case
        assert r.status_code == 400 and r.json() == {"message": "invalid JSON in request body"}


def test_operation_ids_are_unique_and_head_still_answers(server: Server) -> None:
    """Code generators key on operationId: GET and HEAD of one route once shared theirs."""
    with server.client() as c:
        doc: dict[str, Any] = c.get("/openapi.json").json()
        heads = [c.head(p).status_code for p in ("/", "/api/tags", "/api/version")]
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert heads == [200, 200, 200]
