"""The audit log in the console: the page ``/audit`` and ``GET /api/v1/audit``, admin only.

Both search by actor (a part of the name), action (a prefix: ``login`` finds failed logins
too) and time (ISO-8601 or an age such as ``2h``), newest first, one page of at most ``[web]
page_size_max`` lines. The lines hold names as typed at the login form: the page escapes them
like every value (autoescape, and control characters made visible).

:class:`ActorMiddleware` names the actor of every request that may change something (any
method but GET and HEAD) before a handler runs: the session's account, ``API token NAME``, or
``digest link`` for ``/release/...``. Whatever a handler then does through the service layer
(a release, a delete, a queue action) is audited as that actor by ``logs.adminlog``, with no
audit call in the handler: a handler cannot forget it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from edgeward.logs.audit import Actor, acting, audit_query, read_audit
from edgeward.web.api import admin_token
from edgeward.web.app import SESSION_COOKIE, Console, console_of
from edgeward.web.auth import ApiToken

__all__ = ["ActorMiddleware", "api_router", "router"]

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
    pages = console.pages(total, size)
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


def _actor(console: Console, request: Request) -> Actor:
    source = request.client.host if request.client else "unknown"
    if request.url.path.startswith("/release/"):
        return Actor("digest link", "web", source)
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and (tok := console.accounts.token_role(secret.strip())) is not None:
        return Actor(f"API token {tok.name}", "api", source)
    session = console.accounts.session(request.cookies.get(SESSION_COOKIE, ""))
    return Actor(session.name if session else "(not logged in)", "web", source)


class ActorMiddleware:
    """Sets the audit actor for requests that may change something (plain ASGI, no buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        console: Console = scope["app"].state.console
        actor = await run_in_threadpool(_actor, console, request)  # SQLite: off the event loop
        with acting(actor):
            await self.app(scope, receive, send)
