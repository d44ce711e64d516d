"""The administrators' REST calls under ``/api/v1``: one queued message and its actions, the
quarantine export, the configuration and its check, the certificates, the agents.

Tokens as in ``web.api``: every read takes any token, the queue actions and the export an
``admin`` token. Errors are JSON ``{"detail": ...}``: 404 for an id that is not in the queue
or the quarantine (an id that is no id at all included), 409 for an action the message's state
forbids (retry of a message that is not deferred, release of one that is not held, hold or
remove while it is being delivered). Each action is tracked as ``by API token NAME``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from edgeward.quarantine.crypto import KeyMismatch
from edgeward.quarantine.store import QuarantineError
from edgeward.quarantine.view import escape
from edgeward.queue.admin import QueueAdmin, Queued, WrongState, allowed
from edgeward.queue.model import MessageRecord, record_to_dict
from edgeward.tls.errors import CertificateError
from edgeward.web.admin_data import agents, certificates, config_check, effective_config, queue_admin
from edgeward.web.admin_views import eml_response
from edgeward.web.api import admin_token, token
from edgeward.web.app import console_of
from edgeward.web.auth import ApiToken

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["v1"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid API token"}, 403: {"description": "The token's role may not do this"},
    404: {"description": "No such message"},
}  # fmt: skip
_ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS, 409: {"description": "The message's state does not allow this"},
}  # fmt: skip
_NO_SUCH = "no such message in the queue"
Reader = Annotated[ApiToken, Depends(token)]
Admin = Annotated[ApiToken, Depends(admin_token)]


def _record(record: MessageRecord) -> dict[str, Any]:
    out = record_to_dict(record)
    out.pop("v", None)
    out["state"] = record.state.value
    out["actions"] = list(allowed(record))
    return out


def _shown(shown: Queued) -> dict[str, Any]:
    # Header lines escaped as the pages show them: control and bidi characters as \xNN text.
    headers = [escape(h, keep_newlines=False) for h in shown.headers]
    return {**_record(shown.record), "headers": headers}


def _by(tok: ApiToken) -> str:
    return f"API token {tok.name}"


def _run(admin: QueueAdmin, action: str, msg_id: str, tok: ApiToken, reason: str = "") -> dict[str, Any]:
    try:
        if action == "hold":
            record = admin.hold(msg_id, by=_by(tok), reason=reason or "admin")
        else:
            record = admin.act(action, msg_id, by=_by(tok))
    except KeyError:
        raise HTTPException(404, _NO_SUCH) from None
    except WrongState as exc:
        raise HTTPException(409, str(exc)) from None
    return {"action": action, "message": _record(record)}


@router.get("/queue/{msg_id}", responses=_ERRORS)
def queue_show(request: Request, msg_id: str, _tok: Reader) -> dict[str, Any]:
    """One queued message: envelope, state, attempts, last reply, per-recipient status, headers."""
    try:
        return _shown(queue_admin(console_of(request)).show(msg_id))
    except KeyError:
        raise HTTPException(404, _NO_SUCH) from None


@router.post("/queue/{msg_id}/retry", responses=_ACTION_ERRORS)
def queue_retry(request: Request, msg_id: str, tok: Admin) -> dict[str, Any]:
    """Make a deferred message due now."""
    return _run(queue_admin(console_of(request)), "retry", msg_id, tok)


class HoldBody(BaseModel):
    reason: str = Field("admin", min_length=1, max_length=200, description="Why, shown in the queue")


@router.post("/queue/{msg_id}/hold", responses={**_ACTION_ERRORS, 400: {"description": "No JSON body"}})
def queue_hold(request: Request, msg_id: str, tok: Admin, body: HoldBody | None = None) -> dict[str, Any]:
    """Hold a waiting message: it is not delivered until released."""
    reason = body.reason if body is not None else "admin"
    return _run(queue_admin(console_of(request)), "hold", msg_id, tok, reason)


@router.post("/queue/{msg_id}/release", responses=_ACTION_ERRORS)
def queue_release(request: Request, msg_id: str, tok: Admin) -> dict[str, Any]:
    """Release a held (or repaired corrupt) message for delivery now."""
    return _run(queue_admin(console_of(request)), "release", msg_id, tok)


@router.delete("/queue/{msg_id}", responses=_ACTION_ERRORS)
def queue_remove(request: Request, msg_id: str, tok: Admin) -> dict[str, Any]:
    """Delete a message from the queue (no report to the sender)."""
    return _run(queue_admin(console_of(request)), "remove", msg_id, tok)


@router.get(
    "/quarantine/{qid}/export",
    responses={**_ERRORS, 200: {"content": {"application/octet-stream": {}}, "description": "The .eml"}},
    response_class=Response,
)
def quarantine_export(request: Request, qid: str, tok: Admin) -> Response:
    """The quarantined message as it arrived, as an .eml download."""
    try:
        data = console_of(request).quarantine.export(qid, by=_by(tok))
    except (KeyError, QuarantineError, KeyMismatch):
        raise HTTPException(404, "no such message in quarantine") from None
    return eml_response(qid, data)


@router.get("/config", responses=_ERRORS)
def config_show(request: Request, _tok: Reader) -> dict[str, Any]:
    """The effective configuration as ``config show`` prints it, every secret redacted."""
    return effective_config(console_of(request))


@router.get("/config/check", responses=_ERRORS)
def config_check_findings(request: Request, _tok: Reader) -> dict[str, Any]:
    """The ``config check`` findings, errors first."""
    findings = config_check(console_of(request))
    errors = sum(f["severity"] == "error" for f in findings)
    return {"ok": errors == 0, "errors": errors, "warnings": len(findings) - errors, "findings": findings}


@router.get("/certificates", responses={**_ERRORS, 503: {"description": "The store cannot be read"}})
def certificates_list(request: Request, _tok: Reader) -> dict[str, Any]:
    """The certificate store as ``cert list --json`` prints it, with the days left."""
    try:
        return certificates(console_of(request)).to_json()
    except (CertificateError, OSError) as exc:
        raise HTTPException(503, f"the certificate store cannot be read: {exc}") from None


@router.get("/agents", responses=_ERRORS)
def agents_list(request: Request, _tok: Reader) -> dict[str, Any]:
    """The agent pipeline as ``agents list --json`` prints it: order, stages, thresholds, scores."""
    return agents(console_of(request)).document()
