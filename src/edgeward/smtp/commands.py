"""From a command that is in sequence to its event, and from an accepted EHLO to its reply.

This module owns the pure parts of the command layer that depend on what the session knows
(TLS up or not, the open transaction, recipients so far, authentication): which optional
parameters the advertised extensions allow, the event for each command, and the EHLO
extension list. :class:`~edgeward.smtp.connection.ServerConnection` calls it with that state;
nothing here keeps any.

Security: AUTH and its MAIL parameter are offered only under TLS unless the connector says
otherwise, and REQUIRETLS only under TLS (RFC 8689 §4.1), so a parameter that the client was
not offered is refused (``555 5.5.4``) rather than silently accepted.
"""

from __future__ import annotations

from edgeward.errors import ProtocolError
from edgeward.smtp import replies as r
from edgeward.smtp.events import (
    Auth,
    Data,
    Event,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)
from edgeward.smtp.parse import ParamPolicy, parse_auth, parse_helo, parse_mail, parse_rcpt
from edgeward.smtp.settings import Extensions, ProtocolLimits
from edgeward.smtp.state import Input
from edgeward.types import Reply

__all__ = ["command_event", "ehlo_lines", "param_policy", "render_helo"]


def param_policy(ext: Extensions, limits: ProtocolLimits, *, tls: bool) -> ParamPolicy:
    """Which MAIL/RCPT parameters the extensions advertised right now allow."""
    return ParamPolicy(
        smtputf8=ext.smtputf8,
        dsn=ext.dsn,
        binarymime=ext.chunking,
        auth=bool(ext.auth_mechanisms) and (tls or ext.auth_before_tls),
        requiretls=ext.requiretls and tls,
        max_size=limits.max_message_size,
    )


def command_event(
    kind: Input,
    arg: str,
    *,
    policy: ParamPolicy,
    mail: MailFrom | None,
    recipients: int,
    max_recipients: int,
    authenticated: bool,
) -> Event:
    """The event for a command that is in sequence; raises ProtocolError on bad arguments."""
    if kind in (Input.HELO, Input.EHLO):
        return Helo(parse_helo(arg), esmtp=kind is Input.EHLO)
    if kind is Input.MAIL:
        path, params, size, body, smtputf8 = parse_mail(arg, policy)
        return MailFrom(path.address, params, size, body, smtputf8, source_route=path.source_route)
    if kind is Input.RCPT:
        smtputf8 = mail is not None and mail.smtputf8
        path, params = parse_rcpt(arg, policy, smtputf8=smtputf8)
        if recipients >= max_recipients:
            raise ProtocolError(r.TOO_MANY_RECIPIENTS)
        return RcptTo(path.address, params, source_route=path.source_route)
    if kind is Input.DATA:
        if mail is not None and mail.body == "BINARYMIME":
            raise ProtocolError(r.BINARYMIME_NEEDS_BDAT)
        return Data()
    if kind is Input.VRFY:
        if not arg.strip(" "):
            raise ProtocolError(r.VRFY_SYNTAX)
        return Vrfy(arg.strip(" "))
    if kind is Input.AUTH:
        if authenticated:
            raise ProtocolError(r.ALREADY_AUTHENTICATED)
        return Auth(*parse_auth(arg))
    simple: dict[Input, Event] = {
        Input.RSET: Rset(),
        Input.NOOP: Noop(),
        Input.QUIT: Quit(),
        Input.HELP: Help(arg.strip(" ")),
        Input.STARTTLS: StartTls(),
    }
    return simple[kind]


def ehlo_lines(ext: Extensions, *, tls: bool) -> list[str]:
    """The extension keywords an EHLO reply lists, given whether TLS is up."""
    lines = ["PIPELINING"] if ext.pipelining else []
    lines += [f"SIZE {ext.size}" if ext.size > 0 else "SIZE", "8BITMIME"]
    lines += ["SMTPUTF8"] if ext.smtputf8 else []
    lines += ["ENHANCEDSTATUSCODES"]
    lines += ["STARTTLS"] if ext.starttls and not tls else []
    lines += ["CHUNKING"] if ext.chunking else []
    lines += ["DSN"] if ext.dsn else []
    lines += ["REQUIRETLS"] if ext.requiretls and tls else []
    if ext.auth_mechanisms and (tls or ext.auth_before_tls):  # AUTH only after STARTTLS
        lines.append("AUTH " + " ".join(ext.auth_mechanisms))
    return lines


def render_helo(event: Helo, reply: Reply, ext: Extensions, *, tls: bool) -> bytes:
    """A positive HELO/EHLO reply, multi-line with the extensions for EHLO."""
    # RFC 2034 §3: no enhanced codes in replies to HELO/EHLO, nor on the extension lines.
    lines = reply.text.split("\n")
    if event.esmtp:
        lines += ehlo_lines(ext, tls=tls)
    last = len(lines) - 1
    text = "".join(f"{reply.code}{' ' if i == last else '-'}{line}\r\n" for i, line in enumerate(lines))
    return text.encode("utf-8", "replace")
