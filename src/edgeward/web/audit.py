"""The audit log in the console: the page ``/audit`` and ``GET /api/v1/audit``, admin only.

Both search by actor (a part of the name), action (a prefix: ``login`` finds failed logins
too) and time (ISO-8601 or an age such as ``2h``), newest first, one page of at most ``[web]
page_size_max`` lines. The lines hold names as typed at the login form: the page escapes them
like every value (autoescape, and control characters made visible).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from edgeward.logs.audit import audit_query, read_audit
from edgeward.web.api import admin_token
from edgeward.web.app import console_of
from edgeward.web.auth import ApiToken

__all__ = ["api_router", "router"]

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api/v1", tags=["v1"])
Text = Annotated[str, Query(max_length=200)]


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    actor: Text = "",
    action: Text = "",
    since: Text = "",
    until: Text = "",
    page: Annotated[int, Query(ge=1, le=100000)] = 1,
) -> Response:
    console = console_of(request)
    session = console.require(request)
    if not session.is_admin:
        return console.message(request, "Not allowed", "The audit log is for administrators.", 403, session)
    values = {"actor": actor, "action": action, "since": since, "until": until}
    size = console.page_size
    try:
        entries, total = read_audit(
            console.config, audit_query(actor, action, since, until, page=page, size=size)
        )
    except ValueError as exc:
        return console.render(request, "audit.html", 400, session, query=values, entries=[], total=0,
                              page=1, pages=1, error=str(exc))  # fmt: skip
    pages = max(1, -(-total // size))
    return console.render(request, "audit.html", session=session, query=values, entries=entries,
                          total=total, page=page, pages=pages, error="")  # fmt: skip


@api_router.get("/audit", responses={
    400: {"description": "Times that do not parse"}, 401: {"description": "No valid API token"},
    403: {"description": "The token is not an admin one"},
})  # fmt: skip
def audit_api(
    request: Request,
    _tok: Annotated[ApiToken, Depends(admin_token)],
    actor: Text = "",
    action: Text = "",
    since: Annotated[str, Query(max_length=64, description="ISO-8601 or an age: 30m, 2h, 3d")] = "",
    until: Annotated[str, Query(max_length=64, description="ISO-8601 or an age: 30m, 2h, 3d")] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000, description="Capped at [web] page_size_max")] = 50,
) -> dict[str, Any]:
    console = console_of(request)
    size = min(page_size, console.page_size)
    try:
        query = audit_query(actor, action, since, until, page=page, size=size)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    entries, total = read_audit(console.config, query)
    return {"total": total, "page": page, "page_size": size, "entries": entries}
