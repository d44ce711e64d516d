"""The console's HTML pages: quarantine (search, show, release, delete), the queue list,
tracking, digest links (logging in and out: ``web.login``; queue actions: ``web.admin_views``).

Every page but the login and the digest link page needs a session; every change is a POST
carrying the session's CSRF token (a GET never changes anything: a GET to a change's address
is answered 405), and releasing or deleting needs the ``admin`` role. End users (role
``user``) see and release only their own mail through their scope (``web.enduser``); every
other page refuses them where the session is read (``Console.require``). The audit log names
who made a change (``web.audit.ActorMiddleware``). The digest link page (``/release/{token}``,
or ``/release?token=`` as digests write it) needs no login: the signed token is the authority,
and it shows what it would release before a POST uses it up (``quarantine.tokens``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from edgeward.quarantine.crypto import KeyMismatch
from edgeward.quarantine.digest import peek_release_token, release_by_token
from edgeward.quarantine.service import Search
from edgeward.quarantine.store import QuarantineError
from edgeward.quarantine.tokens import TokenError
from edgeward.quarantine.view import escape
from edgeward.web.app import Console, console_of
from edgeward.web.auth import Session
from edgeward.web.enduser import Scope, landing
from edgeward.web.queries import LogUnreadable, TrackingQuery, queue_page, track_search, why_lines

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Query(max_length=500)]
FormText = Annotated[str, Form(max_length=1000)]
_UNUSABLE = (KeyError, QuarantineError, KeyMismatch)


def _scope(console: Console, session: Session) -> Scope:
    return console.accounts.endusers.scope(session.role, session.name)


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    session = console_of(request).require(request)
    return RedirectResponse(landing(session), status_code=303)


@router.get("/quarantine", response_class=HTMLResponse)
def quarantine_list(
    request: Request,
    sender: Text = "",
    recipient: Text = "",
    subject: Text = "",
    reason: Text = "",
    finding: Text = "",
    page: Annotated[int, Query(ge=1, le=100000)] = 1,
) -> Response:
    console = console_of(request)
    session = console.require(request)
    size = console.page_size
    query = Search(sender=sender, recipient=recipient, subject=subject, reason=reason, finding=finding,
                   offset=(page - 1) * size, limit=size)  # fmt: skip
    try:
        found = _scope(console, session).search(console.quarantine, query)
    except KeyMismatch as exc:
        return console.message(request, "Quarantine unreadable", str(exc), 500, session)
    pages = console.pages(found.total, size)
    return console.render(
        request, "quarantine_list.html", session=session, found=found, page=page, pages=pages,
        query={"sender": sender, "recipient": recipient, "subject": subject, "reason": reason,
               "finding": finding},
    )  # fmt: skip


@router.get("/quarantine/{qid}", response_class=HTMLResponse)
def quarantine_show(request: Request, qid: str) -> Response:
    console = console_of(request)
    session = console.require(request)
    try:
        shown = _scope(console, session).show(console.quarantine, qid)
    except _UNUSABLE as exc:
        text = "No such message in quarantine." if isinstance(exc, KeyError) else str(exc)
        return console.message(request, "Not found", text, 404, session)
    return console.render(
        request, "quarantine_show.html", session=session, entry=shown.entry, view=shown.view,
    )  # fmt: skip


@router.post("/quarantine/{qid}/release", response_class=HTMLResponse)
async def quarantine_release(
    request: Request, qid: str, csrf: FormText = "", to: Annotated[list[str] | None, Form()] = None
) -> Response:
    console = console_of(request)
    session = console.require(request)
    if (refused := console.refuse_change(request, session, csrf, users=True)) is not None:
        return refused
    if not to:
        return console.message(request, "Nothing released", "Choose at least one recipient.", 400, session)
    scope = _scope(console, session)
    try:
        wanted = scope.release_to(scope.entry(console.quarantine, qid), to)
        done = await console.quarantine.release(qid, wanted, by=f"{session.name} (web console)")
    except ValueError as exc:
        return console.message(request, "Not released", escape(str(exc), keep_newlines=False), 400, session)
    except _UNUSABLE:
        return console.message(request, "Not found", "No such message in quarantine.", 404, session)
    shown = done.remaining if not scope.limited else ()  # the other recipients are not theirs to know
    left = f"; still held for {', '.join(shown)}" if shown else ""
    text = f"Queued as {done.msg_id} for {', '.join(done.recipients)}{left}."
    return console.message(request, "Released", escape(text, keep_newlines=False), 200, session)


@router.post("/quarantine/{qid}/delete", response_class=HTMLResponse)
def quarantine_delete(request: Request, qid: str, csrf: FormText = "") -> Response:
    console = console_of(request)
    session = console.require(request)
    if (refused := console.refuse_change(request, session, csrf)) is not None:
        return refused
    try:
        console.quarantine.delete(qid, by=f"{session.name} (web console)")
    except KeyError:
        return console.message(request, "Not found", "No such message in quarantine.", 404, session)
    return console.message(request, "Deleted", f"Message {qid} was deleted from quarantine.", 200, session)


@router.get("/queue", response_class=HTMLResponse)
def queue(request: Request, state: Text = "", page: Annotated[int, Query(ge=1, le=100000)] = 1) -> Response:
    """The queue viewer's list (one message and its actions: ``web.admin_views``)."""
    console = console_of(request)
    session = console.require(request)
    try:
        records, total = queue_page(console, state, page, console.page_size)
    except ValueError as exc:
        return console.message(request, "Bad state", str(exc), 400, session)
    pages = console.pages(total)
    return console.render(request, "queue.html", session=session, records=records, total=total,
                          page=page, pages=pages, state=state, now=console.now())  # fmt: skip


@router.get("/tracking", response_class=HTMLResponse)
def tracking(
    request: Request,
    sender: Text = "",
    recipient: Text = "",
    message_id: Text = "",
    msg_id: Text = "",
    since: Text = "",
    until: Text = "",
    event: Text = "",
) -> Response:
    console = console_of(request)
    session = console.require(request)
    query = TrackingQuery(sender, recipient, message_id, msg_id, since, until, event)
    values = {"sender": sender, "recipient": recipient, "message_id": message_id, "msg_id": msg_id,
              "since": since, "until": until, "event": event}  # fmt: skip
    try:
        entries, more = track_search(console, query, console.page_size)
    except ValueError as exc:
        return console.render(request, "tracking.html", 400, session, query=values, entries=[],
                              more=False, error=str(exc), searched=True)  # fmt: skip
    except LogUnreadable as exc:
        return console.message(request, "Tracking unreadable", str(exc), 503, session)
    return console.render(
        request, "tracking.html", session=session, query=values, entries=entries, more=more, error="",
        searched=any(values.values()),
    )  # fmt: skip


@router.get("/tracking/why/{msg_id}", response_class=HTMLResponse)
def tracking_why(request: Request, msg_id: str) -> Response:
    console = console_of(request)
    session = console.require(request)
    try:
        lines = why_lines(console, msg_id)
    except LogUnreadable as exc:
        return console.message(request, "Tracking unreadable", str(exc), 503, session)
    return console.render(request, "why.html", session=session, msg_id=msg_id, lines=lines)


def _token_page(
    console: Console, request: Request, token: str, status: int, error: str = "", done: str = ""
) -> HTMLResponse:
    entry = None
    recipient = ""
    if not error and not done:
        try:
            qid, recipient = peek_release_token(console.config, token)
            entry = console.quarantine.entry(qid)
        except TokenError as exc:
            error, status = str(exc), 410 if exc.reason in ("used", "expired", "unknown-entry") else 400
        except _UNUSABLE:
            error, status = "the message is no longer in quarantine", 410
    return console.render(request, "release_link.html", status, entry=entry, recipient=recipient,
                          error=error, done=done, token=token)  # fmt: skip


@router.get("/release/{token}", response_class=HTMLResponse)
def release_link(request: Request, token: str) -> Response:
    return _token_page(console_of(request), request, token, 200)


@router.get("/release", response_class=HTMLResponse)
def release_link_query(request: Request, token: Annotated[str, Query(max_length=2000)] = "") -> Response:
    """The digest's own form of the link, ``release_link_base?token=...`` with the base set to
    ``https://CONSOLE/release``: the same page (its form posts to ``/release/{token}``)."""
    return _token_page(console_of(request), request, token, 200)


@router.post("/release/{token}", response_class=HTMLResponse)
async def release_link_use(request: Request, token: str) -> Response:
    console = console_of(request)
    try:
        done = await release_by_token(console.config, console.quarantine, token)
    except TokenError as exc:
        status = 410 if exc.reason in ("used", "expired", "unknown-entry") else 400
        return _token_page(console, request, token, status, error=str(exc))
    except (ValueError, *_UNUSABLE):
        return _token_page(console, request, token, 410, error="the message is no longer in quarantine")
    text = f"The message was released to {', '.join(done.recipients)} and is on its way."
    return _token_page(console, request, token, 200, done=text)
