"""Logging in and out of the console: the password form, the TOTP code form, logout.

The login form carries its own CSRF token (cookie ``__Host-ew_login``: there is no session
yet). A right password for an account with TOTP enrolled answers the code form and a
``__Host-ew_pending`` cookie naming a pending login (``web.totp``), which is no session: no
page but ``POST /login/code`` accepts it. Every outcome is written to the audit log, failed
ones with the name as typed (escaped wherever it is shown).
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edgeward.logs.audit import Actor, audit
from edgeward.web.app import LOGIN_COOKIE, SESSION_COOKIE, Console, console_of
from edgeward.web.auth import LoginRefused, LoginStep, csrf_ok
from edgeward.web.enduser import landing

__all__ = ["PENDING_COOKIE", "router", "source_of"]

router = APIRouter(include_in_schema=False)
FormText = Annotated[str, Form(max_length=1000)]
PENDING_COOKIE = "__Host-ew_pending"


def source_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="strict")


def _drop(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="strict")


def _form(console: Console, request: Request, status: int = 200, error: str = "") -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = console.render(request, "login.html", status, csrf=token, error=error)
    _cookie(response, LOGIN_COOKIE, token, 3600)
    return response


def _form_ok(request: Request, csrf: str) -> bool:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    return bool(expected) and secrets.compare_digest(expected.encode(), csrf.encode("utf-8", "replace"))


def _refused(console: Console, request: Request, exc: LoginRefused, name: str, template: str) -> Response:
    audit(console.config, "login.failed", target=name, detail=exc.reason,
          actor=Actor(name, "web", source_of(request)))  # fmt: skip
    status = 429 if exc.reason == "throttled" else 403 if exc.reason == "totp-required" else 401
    csrf = request.cookies.get(LOGIN_COOKIE, "")
    return console.render(request, template, status, csrf=csrf, error=str(exc))


def _logged_in(console: Console, request: Request, step: LoginStep) -> Response:
    assert step.session is not None
    audit(console.config, "login", target=step.name, detail=step.session.role,
          actor=Actor(step.name, "web", source_of(request)))  # fmt: skip
    done = RedirectResponse(landing(step.session), status_code=303)
    _cookie(done, SESSION_COOKIE, step.cookie, int(step.session.expires - console.now()))
    _drop(done, LOGIN_COOKIE)
    _drop(done, PENDING_COOKIE)
    return done


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _form(console_of(request), request)


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, name: FormText = "", password: FormText = "", csrf: FormText = "") -> Response:
    console = console_of(request)
    if not _form_ok(request, csrf):
        return _form(console, request, 403, "The form expired; try again.")
    try:
        step = console.accounts.begin_login(name, password, source_of(request))
    except LoginRefused as exc:
        return _refused(console, request, exc, name, "login.html")
    if step.session is not None:
        return _logged_in(console, request, step)
    response = console.render(request, "login_code.html", csrf=csrf, error="")
    _cookie(response, PENDING_COOKIE, step.cookie, 300)
    return response


@router.post("/login/code", response_class=HTMLResponse)
def login_code(request: Request, code: FormText = "", csrf: FormText = "") -> Response:
    console = console_of(request)
    pending = request.cookies.get(PENDING_COOKIE, "")
    found = console.accounts.totp.pending(pending)
    if not _form_ok(request, csrf) or found is None:
        return _form(console, request, 403, "The login expired; start again.")
    try:
        step = console.accounts.finish_login(pending, code, source_of(request))
    except LoginRefused as exc:
        return _refused(console, request, exc, found[0], "login_code.html")
    return _logged_in(console, request, step)


@router.post("/logout")
def logout(request: Request, csrf: FormText = "") -> Response:
    console = console_of(request)
    session = console.require(request)
    if not csrf_ok(session, csrf):
        text = "The form was out of date or did not come from this console. Reload the page and try again."
        return console.message(request, "Form refused", text, 403, session)
    console.accounts.logout(request.cookies.get(SESSION_COOKIE, ""))
    audit(console.config, "logout", target=session.name, actor=Actor(session.name, "web", source_of(request)))
    response = RedirectResponse("/login", status_code=303)
    _drop(response, SESSION_COOKIE)
    return response
