"""Schemathesis against the console's own OpenAPI document, in process (ASGI), with an admin
token: every operation, a bounded number of generated requests each (valid and invalid
parameters and bodies), none may be answered 5xx, and every answer must conform to what the
document declares (status code, content type, body schema). The quarantine holds entries so
that searches return some; generated ids are no ids and must be 404s, never errors."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from pydantic import BaseModel
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from edgeward.logs.tracking import TrackingLog
from edgeward.web.app import create_app
from edgeward.web.auth import WebAccounts
from tests.web.conftest import hold, make_config, message

EXAMPLES = 15  # per operation and mode: eighteen operations in about a minute on two shared cores
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
_token: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    root: Path = tmp_path_factory.mktemp("api-schema")
    config = make_config(root)
    _token["admin"] = WebAccounts(config.resolve(Path("state"))).add_token("fuzz", "admin")
    for n in range(3):
        hold(
            config,
            message(subject=f"offer {n}"),
            subject=f"offer {n}",
            rcpts=("a@example.test", "b@example.test"),
        )
    log = TrackingLog(config.resolve(config.logging.dir), config.logging)
    for n in range(3):
        log.event("RECEIVE", msg_id=f"m{n}", sender="s@remote.test", recipients=["a@example.test"])
    log.close()
    return create_app(config)


@pytest.fixture(scope="module")
def operations(api_app: FastAPI) -> list[APIOperation]:
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", api_app)
    return [result.ok() for result in schema.get_all_operations()]


def test_the_document_lists_every_api_operation(operations: list[APIOperation]) -> None:
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "GET /api/v1/quarantine", "GET /api/v1/quarantine/{qid}", "POST /api/v1/quarantine/{qid}/release",
        "DELETE /api/v1/quarantine/{qid}", "GET /api/v1/quarantine/{qid}/export", "GET /api/v1/tracking",
        "GET /api/v1/queue", "GET /api/v1/queue/{msg_id}", "POST /api/v1/queue/{msg_id}/retry",
        "POST /api/v1/queue/{msg_id}/hold", "POST /api/v1/queue/{msg_id}/release",
        "DELETE /api/v1/queue/{msg_id}", "GET /api/v1/config", "GET /api/v1/config/check",
        "GET /api/v1/certificates", "GET /api/v1/agents", "GET /api/v1/stats", "GET /api/v1/audit",
    }  # fmt: skip


def _fuzz(operations: list[APIOperation], mode: GenerationMode, headers: dict[str, str]) -> set[str]:
    """Run the checks on generated requests to each operation; the operations for which no
    request of that mode could be made. A failed check raises, with the request to replay.

    Driven by hand rather than by schemathesis' pytest plugin: its lazy fixture loader does not
    work with this pytest (9.x), and a loop over the operations says plainly what is covered."""
    none_made: set[str] = set()
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def run(case: Case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise
            none_made.add(f"{operation.method.upper()} {operation.path}")
    return none_made


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented(operations: list[APIOperation], mode: GenerationMode) -> None:
    no_invalid_input = _fuzz(operations, mode, {"Authorization": f"Bearer {_token['admin']}"})
    # Every string is a well-formed id (unknown ones are 404s): there is no invalid request to
    # make of the operations whose one input is the id or that take none, and only of those.
    assert no_invalid_input <= {
        "GET /api/v1/quarantine/{qid}", "DELETE /api/v1/quarantine/{qid}",
        "GET /api/v1/quarantine/{qid}/export", "GET /api/v1/queue/{msg_id}",
        "POST /api/v1/queue/{msg_id}/retry", "POST /api/v1/queue/{msg_id}/release",
        "DELETE /api/v1/queue/{msg_id}", "GET /api/v1/config", "GET /api/v1/config/check",
        "GET /api/v1/certificates", "GET /api/v1/agents",
    }  # fmt: skip


def _broken_app() -> FastAPI:
    app = FastAPI(openapi_url="/openapi.json")

    class Count(BaseModel):
        total: int

    @app.get("/fail")
    def fail(q: str = "") -> JSONResponse:
        return JSONResponse({"detail": "it broke"}, status_code=500)

    @app.get("/count", response_model=Count)
    def count() -> JSONResponse:
        return JSONResponse({"total": "many"})  # not what the document declares

    return app


@pytest.mark.parametrize(
    ("path", "failure"), [("/fail", "Server error"), ("/count", "Response violates schema")]
)
def test_the_checks_fail_on_a_5xx_and_on_an_undeclared_body(path: str, failure: str) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", _broken_app())
    [operation] = [r.ok() for r in schema.get_all_operations() if r.ok().path == path]
    with pytest.raises(BaseException) as caught:  # the checks raise a group of their failures
        _fuzz([operation], GenerationMode.POSITIVE, {})
    assert failure in "".join(traceback.format_exception(caught.value))
