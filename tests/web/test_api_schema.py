"""Schemathesis against the console's own OpenAPI document, in process (ASGI), with an admin
token: every operation, a bounded number of generated requests each (valid and invalid
parameters and bodies), none may be answered 5xx, and every answer must conform to what the
document declares (status code, content type, body schema). The quarantine holds entries so
that searches return some; generated ids are no ids and must be 404s, never errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
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

EXAMPLES = 30  # per operation: six operations in well under a minute on two shared cores
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
        "DELETE /api/v1/quarantine/{qid}", "GET /api/v1/tracking", "GET /api/v1/queue",
    }  # fmt: skip


# Driven by hand rather than by schemathesis' pytest plugin: its lazy fixture loader does not
# work with this pytest (9.x), and a loop over the operations says plainly what is covered.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented(operations: list[APIOperation], mode: GenerationMode) -> None:
    headers = {"Authorization": f"Bearer {_token['admin']}"}
    no_invalid_input: set[str] = set()
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
            no_invalid_input.add(f"{operation.method.upper()} {operation.path}")
    # Every string is a well-formed qid (unknown ones are 404s): there is no invalid request to
    # make of the operations whose one input is the id, and only of those.
    assert no_invalid_input <= {"GET /api/v1/quarantine/{qid}", "DELETE /api/v1/quarantine/{qid}"}
