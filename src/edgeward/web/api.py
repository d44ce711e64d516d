"""The REST API under ``/api/v1``: the quarantine and tracking calls the pages make, as JSON.

Scripts authenticate with an API token (``edgeward web token add NAME --role ...``) in an
``Authorization: Bearer`` header; there are no cookies here, so no CSRF to guard against.
Read calls need any token, release and delete an ``admin`` token; a ``user`` token (bound to
an end-user account) sees and releases only that account's mail (``web.enduser``: other
entries are 404) and reaches nothing else. Changes are audited as ``API token NAME``
(``web.audit.ActorMiddleware``). Every
4xx has a JSON body (``{"detail": ...}``; FastAPI's for validation errors); bad input is never
a 5xx: ids that are not ids are 404, criteria that do not parse are 400 or 422. Lists are
paged and a page holds at most ``[web] page_size_max`` entries, whatever was asked for.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from edgeward.quarantine.crypto import KeyMismatch
from edgeward.quarantine.entry import QuarantineEntry
from edgeward.quarantine.service import Search
from edgeward.quarantine.store import QuarantineError
from edgeward.queue.model import record_to_dict
from edgeward.web.app import console_of
from edgeward.web.auth import ApiToken
from edgeward.web.enduser import Scope, end_user_may
from edgeward.web.queries import LogUnreadable, TrackingQuery, queue_page, track_search

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["v1"])
Text = Annotated[str, Query(max_length=500)]
_UNUSABLE = (KeyError, QuarantineError, KeyMismatch)
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No valid API token"}, 403: {"description": "The token's role may not do this"},
    404: {"description": "No such entry"},
}  # fmt: skip


def token(request: Request) -> ApiToken:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    found = console_of(request).accounts.token_role(secret.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        raise HTTPException(401, "a valid API token is needed", headers={"WWW-Authenticate": "Bearer"})
    if found.role == "user" and not end_user_may(request.url.path):
        raise HTTPException(403, "this token reaches its own quarantine only")
    return found


def admin_token(tok: Annotated[ApiToken, Depends(token)]) -> ApiToken:
    if tok.role != "admin":
        raise HTTPException(403, "this token is read-only")
    return tok


def _scope(request: Request, tok: ApiToken) -> Scope:
    endusers = console_of(request).accounts.endusers
    return endusers.scope(tok.role, endusers.token_account(tok.name))


def _entry(e: QuarantineEntry) -> dict[str, Any]:
    out = asdict(e)
    out.pop("queue_record", None)  # the spool's internals; everything a client needs is above
    return out


@router.get("/quarantine", responses=_ERRORS)
def quarantine_search(
    request: Request,
    tok: Annotated[ApiToken, Depends(token)],
    sender: Text = "",
    recipient: Text = "",
    subject: Text = "",
    reason: Text = "",
    finding: Text = "",
    since: Annotated[float | None, Query(ge=0, le=1e11, description="Epoch seconds")] = None,
    until: Annotated[float | None, Query(ge=0, le=1e11, description="Epoch seconds")] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000, description="Capped at [web] page_size_max")] = 50,
) -> dict[str, Any]:
    console = console_of(request)
    size = min(page_size, console.page_size)
    query = Search(sender=sender, recipient=recipient, subject=subject, reason=reason, finding=finding,
                   since=since, until=until, offset=(page - 1) * size, limit=size)  # fmt: skip
    try:
        found = _scope(request, tok).search(console.quarantine, query)
    except KeyMismatch as exc:
        raise HTTPException(503, str(exc)) from None
    return {
        "total": found.total,
        "page": page,
        "page_size": size,
        "entries": [_entry(e) for e in found.entries],
    }


@router.get("/quarantine/{qid}", responses=_ERRORS)
def quarantine_show(request: Request, qid: str, tok: Annotated[ApiToken, Depends(token)]) -> dict[str, Any]:
    try:
        shown = _scope(request, tok).show(console_of(request).quarantine, qid)
    except _UNUSABLE:
        raise HTTPException(404, "no such message in quarantine") from None
    return {"entry": _entry(shown.entry), "view": asdict(shown.view)}


class ReleaseBody(BaseModel):
    recipients: list[Annotated[str, Field(max_length=320)]] | None = Field(
        None, max_length=1000, description="Release to these recipients only (all when absent)"
    )


@router.post("/quarantine/{qid}/release", responses={**_ERRORS, 400: {"description": "Not a recipient"}})
async def quarantine_release(
    request: Request,
    qid: str,
    tok: Annotated[ApiToken, Depends(token)],
    body: ReleaseBody | None = None,
) -> dict[str, Any]:
    if tok.role == "readonly":
        raise HTTPException(403, "this token is read-only")
    service, scope = console_of(request).quarantine, _scope(request, tok)
    try:
        wanted = scope.release_to(scope.entry(service, qid), body.recipients if body is not None else None)
        done = await service.release(qid, wanted, by=f"API token {tok.name}")
        if scope.limited:
            done = replace(done, remaining=())  # who else got the message is not theirs to know
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    except _UNUSABLE:
        raise HTTPException(404, "no such message in quarantine") from None
    return asdict(done)


@router.delete("/quarantine/{qid}", responses=_ERRORS)
def quarantine_delete(
    request: Request, qid: str, tok: Annotated[ApiToken, Depends(admin_token)]
) -> dict[str, Any]:
    try:
        console_of(request).quarantine.delete(qid, by=f"API token {tok.name}")
    except KeyError:
        raise HTTPException(404, "no such message in quarantine") from None
    return {"deleted": qid}


@router.get(
    "/tracking",
    responses={
        **_ERRORS,
        400: {"description": "Criteria that do not parse"},
        503: {"description": "The tracking log cannot be read"},
    },
)
def tracking(
    request: Request,
    _tok: Annotated[ApiToken, Depends(token)],
    sender: Text = "",
    recipient: Text = "",
    message_id: Text = "",
    msg_id: Text = "",
    since: Annotated[str, Query(max_length=64, description="ISO-8601 or an age: 30m, 2h, 3d")] = "",
    until: Annotated[str, Query(max_length=64, description="ISO-8601 or an age: 30m, 2h, 3d")] = "",
    event: Annotated[str, Query(max_length=32)] = "",
    limit: Annotated[int, Query(ge=1, le=1000, description="Capped at [web] page_size_max")] = 100,
) -> dict[str, Any]:
    console = console_of(request)
    query = TrackingQuery(sender, recipient, message_id, msg_id, since, until, event)
    try:
        entries, more = track_search(console, query, min(limit, console.page_size))
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    except LogUnreadable as exc:
        raise HTTPException(503, str(exc)) from None
    return {"entries": entries, "more": more}


@router.get("/queue", responses={**_ERRORS, 400: {"description": "Not a queue state"}})
def queue(
    request: Request,
    _tok: Annotated[ApiToken, Depends(token)],
    state: Annotated[str, Query(max_length=16, description="incoming, active, deferred, hold, corrupt")] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000, description="Capped at [web] page_size_max")] = 50,
) -> dict[str, Any]:
    console = console_of(request)
    size = min(page_size, console.page_size)
    try:
        records, total = queue_page(console, state, page, size)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    entries = [{**record_to_dict(r), "state": r.state.value} for r in records]
    for e in entries:
        e.pop("v", None)
    return {"total": total, "page": page, "page_size": size, "entries": entries}
