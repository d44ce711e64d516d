"""``[attachments]``: the attachment filter's lists and actions, and the bounds of the MIME walk.

The shipped lists are Exchange 2007 Edge's defaults (``Get-AttachmentFilterEntry``): 60
``FileName`` patterns and 10 ``ContentType`` entries. Edgeward adds ``true_types``, matched
against the type libmagic reads from the content (``scanning.truetype``), so a program renamed
``invoice.pdf`` and declared ``application/pdf`` is still one. Entries match every candidate
name of a part (``name=`` and ``filename=``, decoded, and what a client would act on) and,
with ``inside_archives``, every archive member.

Actions, as Exchange's ``Set-AttachmentFilterListConfig``: ``strip`` (the shipped default, as
Exchange's documentation and schema give it) removes the attachment, puts a short text part in
its place (``admin_message``), delivers the rest and quarantines the original; ``reject``
answers ``550 5.7.1 <reject_response> (<rule>: <name>)``; ``silent_delete`` accepts and drops
the message (tracked as DISCARD).

``signed_action`` decides a strip inside a signed message (S/MIME, PGP/MIME): stripping breaks
the signature, which the recipient would see as tampering, and delivering it unstripped would
deliver the attachment; so by default the whole message is quarantined instead.
``encrypted_action`` decides an encrypted archive or Office document (``ARCHIVE_ENCRYPTED``,
whose content no engine can see): ``score`` lets its weight count in the total, or ``reject``
or ``quarantine`` outright. ``incomplete_action`` decides a message the walk could not finish
(a bound reached: depth, parts, decoded bytes, an archive bomb): never passed as scanned;
``reject`` (554 5.6.0, the shipped default: the same message would fail the same way again) or
``tempfail`` (451 4.6.0, while an operator raises a bound).

``[attachments.walk]`` bounds the one walk of each message that the attachment filter and the
anti-virus engines share.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["EXCHANGE_CONTENT_TYPES", "EXCHANGE_FILE_NAMES", "AttachmentsConfig", "WalkConfig"]

# Exchange's documentation counts 59 entries and lists these 60; all 60 are shipped.
EXCHANGE_FILE_NAMES = (
    "*.ade", "*.adp", "*.app", "*.asx", "*.bas", "*.bat", "*.chm", "*.cmd", "*.com", "*.cpl", "*.crt",
    "*.csh", "*.exe", "*.fxp", "*.hlp", "*.hta", "*.inf", "*.ins", "*.isp", "*.js", "*.jse", "*.ksh",
    "*.lnk", "*.mda", "*.mdb", "*.mde", "*.mdt", "*.mdw", "*.mdz", "*.msc", "*.msi", "*.msp", "*.mst",
    "*.ops", "*.pcd", "*.pif", "*.prf", "*.prg", "*.ps1", "*.ps1xml", "*.ps11", "*.ps11xml", "*.ps2",
    "*.ps2xml", "*.psc1", "*.psc2", "*.reg", "*.scf", "*.scr", "*.sct", "*.shb", "*.shs", "*.url",
    "*.vb", "*.vbe", "*.vbs", "*.wsc", "*.wsf", "*.wsh", "*.xnk",
)  # fmt: skip
EXCHANGE_CONTENT_TYPES = (
    "application/hta", "application/javascript", "application/msaccess", "application/prg",
    "application/x-javascript", "application/x-msdownload", "message/partial", "text/javascript",
    "text/scriptlet", "x-internet-signup",
)  # fmt: skip
# What libmagic calls Windows programs, installers and shortcuts: nothing a mail needs to carry.
TRUE_TYPES = (
    "application/x-dosexec", "application/vnd.microsoft.portable-executable", "application/x-msdownload",
    "application/x-msi", "application/x-ms-shortcut", "application/x-ms-installer",
)  # fmt: skip


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WalkConfig(_Section):
    """Bounds on the one MIME walk per message (``scanning.walk``); reaching one is a finding."""

    max_depth: int = Field(20, ge=1, le=200, description="MIME nesting (multipart, message/rfc822) walked")
    max_parts: int = Field(500, ge=1, description="MIME entities walked per message")
    max_decoded_bytes: int = Field(64 * 1024 * 1024, ge=0, description="Decoded bytes of all parts together")
    archive_depth: int = Field(5, ge=0, le=50, description="Archives nested in archives unpacked")
    archive_members: int = Field(1000, ge=0, description="Archive members unpacked per message")
    archive_expanded_bytes: int = Field(128 * 1024 * 1024, ge=0, description="Bytes unpacked per message")
    archive_ratio: int = Field(100, ge=1, description="Expansion ratio at which a member over 1 MB is a bomb")


class AttachmentsConfig(_Section):
    """The attachment filter agent (``attachment-filter``, end of data, a hard control)."""

    enabled: bool = Field(True, description="Filter attachments by name, declared type and true type")
    action: Literal["strip", "reject", "silent_delete"] = Field(
        "strip", description="What a blocked attachment does: strip it, reject the message, or drop it"
    )
    file_names: tuple[str, ...] = Field(
        EXCHANGE_FILE_NAMES, description="File name patterns (exact or *.ext, case-insensitive) blocked"
    )
    content_types: tuple[str, ...] = Field(
        EXCHANGE_CONTENT_TYPES, description="Declared MIME types (type/subtype or type/*) blocked"
    )
    true_types: tuple[str, ...] = Field(TRUE_TYPES, description="MIME types read from the content blocked")
    inside_archives: bool = Field(True, description="Apply the lists to archive members too")
    reject_response: str = Field(
        "Message rejected due to unacceptable attachments", max_length=240,
        description="Text of the 550 5.7.1 reply in reject mode; the rule and file name are appended",
    )  # fmt: skip
    admin_message: str = Field(
        "This attachment was removed by the mail gateway because files of this type can harm your"
        " computer. Ask the sender to share it another way, or ask your administrator to release the"
        " original message from quarantine.",
        max_length=2000,
        description="Text of the part that replaces a stripped attachment",
    )
    exception_connectors: tuple[str, ...] = Field(
        (), description="Receive connector names whose mail is not filtered"
    )
    signed_action: Literal["quarantine", "reject"] = Field(
        "quarantine", description="A strip inside a signed message (it would break the signature)"
    )
    encrypted_action: Literal["score", "reject", "quarantine"] = Field(
        "score", description="An encrypted archive or Office document (ARCHIVE_ENCRYPTED)"
    )
    incomplete_action: Literal["reject", "tempfail"] = Field(
        "reject", description="A message whose walk a bound cut short (never passed as scanned)"
    )
    walk: WalkConfig = WalkConfig()
