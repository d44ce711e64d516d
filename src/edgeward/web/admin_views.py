"""The administrators' pages: one queued message and its actions, the quarantine export, the
effective configuration with the ``config check`` findings, the certificates, the agents.

Queue actions (retry, hold, release, remove) go through a confirmation page: a GET to
``/queue/{id}/{action}`` (or ``/queue/bulk?action=...&id=...`` for a selection) changes nothing
and shows what would be done, with a POST form carrying the session's CSRF token; the POST does
it through ``queue.admin``, which tracks it as ``by NAME (web console)``. Both need the
``admin`` role; the read-only role sees every view here except the export (the raw message is
the one thing a reader could carry away whole) and gets 403 for the rest.

The export is served as ``application/octet-stream`` with ``Content-Disposition: attachment``
and the quarantine id as file name, never ``message/rfc822`` or HTML: a browser saves it and
never renders mail on the console's origin.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from edgeward.config.redact import REDACTED
from edgeward.quarantine.crypto import KeyMismatch
from edgeward.quarantine.store import QuarantineError
from edgeward.quarantine.view import escape
from edgeward.queue.admin import ACTIONS, WrongState, allowed
from edgeward.queue.model import MessageRecord
from edgeward.tls.errors import CertificateError
from edgeward.web.admin_data import (
    agents,
    certificates,
    config_check,
    effective_config,
    eml_name,
    queue_admin,
    web_actor,
)
from edgeward.web.app import Console, console_of
from edgeward.web.auth import Session

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
FormText = Annotated[str, Form(max_length=1000)]
Ids = Annotated[list[str] | None, Query(description="Queue ids")]
_VERB = {"retry": "Retry", "hold": "Hold", "release": "Release", "remove": "Remove"}
_NO_SUCH = "No such message in the queue."
_DONE = {"retry": "due now", "hold": "held", "release": "released", "remove": "removed"}


def _unknown_action(console: Console, request: Request, session: Session) -> HTMLResponse:
    return console.message(request, "Not found", f"The actions are {', '.join(ACTIONS)}.", 404, session)


# -- a selection (bulk); before /queue/{msg_id}, which would take "bulk" for an id -----------


@router.get("/queue/bulk", response_class=HTMLResponse)
def queue_bulk_confirm(request: Request, action: Annotated[str, Query(max_length=16)] = "",
                       id: Ids = None) -> Response:  # fmt: skip
    console = console_of(request)
    session = console.require(request)
    if (refused := console.not_admin(request, session)) is not None:
        return refused
    if action not in ACTIONS:
        return _unknown_action(console, request, session)
    admin = queue_admin(console)
    records: list[MessageRecord] = []
    for msg_id in _selection(console, id):
        try:
            records.append(admin.show(msg_id).record)
        except KeyError:
            continue  # gone meanwhile (delivered): nothing to confirm for it
    if not records:
        text = "Tick at least one message in the queue."
        return console.message(request, "Nothing chosen", text, 400, session)
    return console.render(request, "queue_confirm.html", session=session, action=action, verb=_VERB[action],
                          records=records, allowed=allowed, bulk=True)  # fmt: skip


@router.post("/queue/bulk", response_class=HTMLResponse)
def queue_bulk(
    request: Request,
    csrf: FormText = "",
    action: FormText = "",
    id: Annotated[list[str] | None, Form()] = None,
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    console = console_of(request)
    session = console.require(request)
    if (refused := console.refuse_change(request, session, csrf)) is not None:
        return refused
    if action not in ACTIONS:
        return _unknown_action(console, request, session)
    results = [_do(console, session, action, msg_id, reason) for msg_id in _selection(console, id)]
    return console.render(request, "queue_done.html", session=session, verb=_VERB[action], results=results)


def _selection(console: Console, ids: list[str] | None) -> list[str]:
    """The ids ticked, each once, at most a page of them (what one queue page can show)."""
    return list(dict.fromkeys(ids or ()))[: console.page_size]


def _do(console: Console, session: Session, action: str, msg_id: str, reason: str) -> tuple[str, bool, str]:
    """``(id, done, what happened)`` for one message."""
    admin = queue_admin(console)
    by = web_actor(session.name)
    try:
        if action == "hold":
            admin.hold(msg_id, by=by, reason=reason.strip() or "admin")
        else:
            admin.act(action, msg_id, by=by)
    except KeyError:
        return msg_id, False, _NO_SUCH
    except WrongState as exc:
        return msg_id, False, str(exc)
    return msg_id, True, _DONE[action]


# -- one message ---------------------------------------------------------------------------------


@router.get("/queue/{msg_id}", response_class=HTMLResponse)
def queue_show(request: Request, msg_id: str) -> Response:
    console = console_of(request)
    session = console.require(request)
    try:
        shown = queue_admin(console).show(msg_id)
    except KeyError:
        return console.message(request, "Not found", _NO_SUCH, 404, session)
    record = shown.record
    return console.render(request, "queue_show.html", session=session, record=record,
                          headers=shown.headers, actions=allowed(record), now=console.now())  # fmt: skip


@router.get("/queue/{msg_id}/{action}", response_class=HTMLResponse)
def queue_confirm(request: Request, msg_id: str, action: str) -> Response:
    console = console_of(request)
    session = console.require(request)
    if (refused := console.not_admin(request, session)) is not None:
        return refused
    if action not in ACTIONS:
        return _unknown_action(console, request, session)
    try:
        record = queue_admin(console).show(msg_id).record
    except KeyError:
        return console.message(request, "Not found", _NO_SUCH, 404, session)
    if action not in allowed(record):
        text = f"Message {record.id} is {record.state.value}; {action} is not possible in that state."
        return console.message(request, "Not possible", text, 409, session)
    return console.render(request, "queue_confirm.html", session=session, action=action, verb=_VERB[action],
                          records=[record], allowed=allowed, bulk=False)  # fmt: skip


@router.post("/queue/{msg_id}/{action}", response_class=HTMLResponse)
def queue_act(
    request: Request, msg_id: str, action: str, csrf: FormText = "",
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:  # fmt: skip
    console = console_of(request)
    session = console.require(request)
    if (refused := console.refuse_change(request, session, csrf)) is not None:
        return refused
    if action not in ACTIONS:
        return _unknown_action(console, request, session)
    _, done, what = _do(console, session, action, msg_id, reason)
    if not done:
        status = 404 if what == _NO_SUCH else 409
        return console.message(request, "Not done", what, status, session)
    return console.message(request, _VERB[action] + " done", f"Message {msg_id}: {what}.", 200, session)


# -- quarantine export -----------------------------------------------------------------------


@router.get("/quarantine/{qid}/export")
def quarantine_export(request: Request, qid: str) -> Response:
    console = console_of(request)
    session = console.require(request)
    if (refused := console.not_admin(request, session)) is not None:
        return refused
    try:
        data = console.quarantine.export(qid, by=web_actor(session.name))
    except (KeyError, QuarantineError, KeyMismatch):
        return console.message(request, "Not found", "No such message in quarantine.", 404, session)
    return eml_response(qid, data)


def eml_response(qid: str, data: bytes) -> Response:
    """The .eml as a download a browser saves and never shows (the API serves the same)."""
    headers = {"Content-Disposition": f'attachment; filename="{eml_name(qid)}"'}
    return Response(data, media_type="application/octet-stream", headers=headers)


# -- read-only views ---------------------------------------------------------------------------


@router.get("/config", response_class=HTMLResponse)
def config_view(request: Request) -> Response:
    console = console_of(request)
    session = console.require(request)
    # Escaped here rather than by clean(), which would fold the lines into one.
    sections = {name: escape(json.dumps(value, indent=2, ensure_ascii=False))
                for name, value in effective_config(console).items()}  # fmt: skip
    return console.render(request, "config.html", session=session, sections=sections,
                          findings=config_check(console), redacted=REDACTED)  # fmt: skip


@router.get("/certificates", response_class=HTMLResponse)
def certificates_view(request: Request) -> Response:
    console = console_of(request)
    session = console.require(request)
    try:
        listing = certificates(console)
    except (CertificateError, OSError) as exc:
        return console.message(request, "Certificate store unreadable", str(exc), 503, session)
    return console.render(request, "certificates.html", session=session, listing=listing)


@router.get("/agents", response_class=HTMLResponse)
def agents_view(request: Request) -> Response:
    from edgeward.agents_listing import score_rows
    from edgeward.filters.base import Stage, is_antispam
    from edgeward.filters.scoring import Thresholds

    console = console_of(request)
    session = console.require(request)
    listing = agents(console)
    thresholds = Thresholds.from_config(console.config)
    return console.render(
        request, "agents.html", session=session, listing=listing, stages=list(Stage), is_antispam=is_antispam,
        thresholds=thresholds.values, pcl=thresholds.pcl, scores=score_rows(console.config),
    )  # fmt: skip
