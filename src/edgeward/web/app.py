"""The web console's FastAPI application, built from a :class:`Config` by :func:`create_app`.

Layout: :class:`Console` holds what every handler needs (the configuration, the accounts, the
quarantine manager, the templates, the tracking statistics); ``web.login`` serves logging in
and out, ``web.pages`` the HTML pages, ``web.dashboard`` the dashboard and ``/api/v1/stats``,
``web.audit`` the audit log, ``web.api`` the rest of the REST
API under ``/api/v1``, ``web.metrics`` the Prometheus ``/metrics``. Handlers parse, check the
role and CSRF token, call the same service layer the CLI calls (``quarantine.service``,
``quarantine.digest``, ``logs.tracking``) and render; no policy lives in a handler.

Templates are Jinja2 with autoescaping on for every template (not chosen by file name), so
every value from mail is HTML-escaped where it is put into a page; the service layer has
already turned control and bidirectional characters into visible ``\\xNN`` text (``header()``
decodes RFC 2047 words first, for subjects kept as they came). Handlers that
touch files or hash passwords are plain functions, which FastAPI runs in its thread pool, so
the event loop is never blocked by them.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from edgeward.config.schema import Config
from edgeward.logs.adminlog import track_admin
from edgeward.logs.stats import TrackingStats
from edgeward.quarantine.service import QuarantineService, open_store
from edgeward.quarantine.view import escape, header_text
from edgeward.queue.spool import Spool
from edgeward.web.auth import Session, WebAccounts, csrf_ok
from edgeward.web.enduser import end_user_may
from edgeward.web.security import SecurityHeaders

__all__ = ["SESSION_COOKIE", "Console", "NeedLogin", "create_app"]

SESSION_COOKIE = "__Host-ew_session"  # __Host-: Secure, path /, no Domain: this origin only
LOGIN_COOKIE = "__Host-ew_login"  # the login form's CSRF token (there is no session yet)
_HERE = Path(__file__).parent


class NeedLogin(Exception):
    """Raised by page handlers without a live session: answered with a redirect to /login."""


class NotForEndUsers(Exception):
    """Raised for an end user's session on a page beyond their quarantine: answered 403."""

    def __init__(self, session: Session) -> None:
        self.session = session


def _when(value: object) -> str:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


@dataclass
class Console:
    config: Config
    accounts: WebAccounts
    quarantine: QuarantineService
    templates: jinja2.Environment
    now: Callable[[], float]
    stats: TrackingStats  # one incremental reader of the tracking logs, for the dashboard and /metrics

    @property
    def log_dir(self) -> Path:
        return self.config.resolve(self.config.logging.dir)

    @property
    def page_size(self) -> int:
        return self.config.web.page_size_max

    def session(self, request: Request) -> Session | None:
        return self.accounts.session(request.cookies.get(SESSION_COOKIE, ""))

    def require(self, request: Request) -> Session:
        session = self.session(request)
        if session is None:
            raise NeedLogin
        if session.is_user and not end_user_may(request.url.path):
            raise NotForEndUsers(session)
        return session

    def render(
        self, request: Request, name: str, status: int = 200, session: Session | None = None, **values: Any
    ) -> HTMLResponse:
        html = self.templates.get_template(name).render(session=session, **values)
        return HTMLResponse(html, status_code=status)

    def message(
        self, request: Request, title: str, text: str, status: int, session: Session | None = None
    ) -> HTMLResponse:
        return self.render(request, "message.html", status, session, title=title, text=text)

    def pages(self, total: int, size: int | None = None) -> int:
        """How many pages ``total`` rows fill (at least one, so an empty list has a page 1)."""
        return max(1, -(-total // (size or self.page_size)))

    def refuse_change(
        self, request: Request, session: Session, csrf: str, *, users: bool = False
    ) -> HTMLResponse | None:
        """The refusal page for a POST with a stale form or from a role that may not change
        anything (end users may when ``users``: their scope then limits what), or None."""
        if not csrf_ok(session, csrf):
            return self.bad_form(request, session)
        if users and session.is_user:
            return None
        return self.not_admin(request, session)

    def not_admin(self, request: Request, session: Session) -> HTMLResponse | None:
        """The page for a change this session may not make, or None when it may."""
        if not session.is_admin:
            return self.message(request, "Not allowed", "Your account may look but not change.", 403, session)
        return None

    def bad_form(self, request: Request, session: Session) -> HTMLResponse:
        """The page for a POST whose CSRF token is missing or stale."""
        text = "The form was out of date or did not come from this console. Reload the page and try again."
        return self.message(request, "Form refused", text, 403, session)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = _when
    env.globals["clean"] = lambda s: escape(str(s), keep_newlines=False)
    # A subject is kept in the entry as it came, RFC 2047 words and all: shown decoded, as the
    # show page's headers and the digest show it, then escaped as clean() does.
    env.globals["header"] = lambda s: header_text(str(s))
    return env


def build_console(config: Config, *, now: Callable[[], float] = time.time) -> Console:
    state = config.resolve(Path("state"))
    web = config.web
    accounts = WebAccounts(
        state, max_failures=web.login_max_failures, window=web.login_window,
        session_lifetime=web.session_lifetime, require_totp=web.require_totp_for_admins, now=now,
    )  # fmt: skip

    def spool() -> Spool:
        q = config.queue
        return Spool(config.resolve(Path("queue")), fsync=q.fsync, poison_threshold=q.poison_threshold)

    def corrupt(name: str, reason: str) -> None:
        track_admin(config, "CORRUPT", msg_id=name, detail=f"quarantine: {reason}")

    service = QuarantineService(
        open_store(config, on_corrupt=corrupt), spool, functools.partial(track_admin, config), now=now
    )
    stats = TrackingStats(config.resolve(config.logging.dir), now=now)
    return Console(config, accounts, service, _environment(), now, stats)


def create_app(config: Config, *, now: Callable[[], float] = time.time) -> FastAPI:
    """The console for ``config``: pages, ``/api/v1`` and ``/metrics``."""
    from edgeward.web import admin_views, api, api_admin, audit, dashboard, login, metrics, pages

    console = build_console(config, now=now)
    app = FastAPI(
        title="Edgeward",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,  # the interactive docs load script from a CDN: not on this origin
        redoc_url=None,
    )
    app.state.console = console
    app.add_middleware(SecurityHeaders)
    app.add_middleware(audit.ActorMiddleware)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")

    @app.exception_handler(NeedLogin)
    async def _login(request: Request, exc: NeedLogin) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(NotForEndUsers)
    async def _staff_only(request: Request, exc: NotForEndUsers) -> Response:
        if request.url.path == "/":
            return RedirectResponse("/quarantine", status_code=303)
        text = "This page is for administrators."
        return console.message(request, "Not allowed", text, 403, exc.session)

    app.include_router(login.router)
    app.include_router(pages.router)
    app.include_router(dashboard.router)
    app.include_router(admin_views.router)
    app.include_router(audit.router)
    app.include_router(api.router)
    app.include_router(api_admin.router)
    app.include_router(dashboard.api_router)
    app.include_router(audit.api_router)
    app.include_router(metrics.router)
    return app


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console
