"""The ``[antivirus]`` settings: every scan engine, the multi-engine bias and what a verdict does.

Forefront's model: several engines behind one policy. ``require`` is the scan-engine bias
(which engines must answer: all, a majority, or any available), each engine has its own
timeout and may be ``required`` on top of the bias, and a scan that does not meet the bias is
unscanned, which by default is ``451 4.7.0`` (never ``250`` for mail that was not scanned).

Decisions where Exchange/Forefront is silent, following what PMG and amavis do at the edge:

- ``enabled`` is off by default, as Exchange's Edge role ships without an engine (Forefront is
  installed on top): with it on and no clamd every message would be refused with ``451``, so the
  operator turns it on once clamd runs. ``edgeward av status`` says what is reachable.
- An infection is rejected (``550 5.7.1`` naming the virus and the part) rather than discarded:
  at SMTP time the sending server keeps the message and tells its sender, with no backscatter
  from us. ``quarantine`` and ``discard`` are there for sites that want amavis's behaviour.
- An item larger than an engine will take (clamd's StreamMaxLength) cannot be scanned however
  often it is retried, so ``unscannable`` refuses it permanently by default instead of deferring
  it for days.

Security: nothing here fails open unless the operator writes it (``on_unavailable = "accept"``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator


def _duration(value: object) -> float:
    # Imported here because schema imports this module for its root Config.
    from edgeward.config.schema import parse_duration

    return parse_duration(value)


def _size(value: object) -> int:
    from edgeward.config.schema import parse_size

    return parse_size(value)


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
Size = Annotated[int, BeforeValidator(_size), Field(ge=0)]

# What a finding of an engine does: a hard decision on the spot, or "score": only the score table
# of [policy] weighs it.
FindingAction = Literal["reject", "quarantine", "discard", "score"]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def parse_socket(value: str) -> str | tuple[str, int]:
    """A clamd address: an absolute unix socket path, or ``host:port`` / ``[v6]:port`` for TCP."""
    value = value.strip()
    if value.startswith("/"):
        return value
    from edgeward.config.schema import split_hostport

    host, port = split_hostport(value, 3310)
    if not host or not 0 < port < 65536:
        raise ValueError(f"expected a unix socket path or host:port, found {value!r}")
    return host, port


class ClamdConfig(_Section):
    enabled: bool = Field(True, description="Scan with ClamAV through clamd")
    socket: str = Field(
        "/run/clamav/clamd.ctl",
        description="clamd's LocalSocket (an absolute path) or TCPAddr:TCPSocket as host:port",
    )
    timeout: Duration = Field(20.0, description="Time clamd may take for the items of one message")
    chunk_size: Size = Field(
        64 * 1024, ge=1, le=16 * 1024 * 1024, description="Bytes per INSTREAM chunk sent to clamd"
    )
    max_stream: Size = Field(
        25 * 1024 * 1024,
        ge=1,
        description="clamd's StreamMaxLength: a larger item is not sent and counts as unscannable",
    )
    required: bool = Field(
        False, description="clamd must answer for every message, whatever the bias of [antivirus]"
    )

    @field_validator("socket")
    @classmethod
    def _socket(cls, v: str) -> str:
        parse_socket(v)
        return v.strip()

    @property
    def address(self) -> str | tuple[str, int]:
        """The socket as the scanner connects to it: a path, or (host, port)."""
        return parse_socket(self.socket)


class YaraConfig(_Section):
    enabled: bool = Field(False, description="Scan with YARA rules (yara-python)")
    rules_dir: Path = Field(
        Path("yara"), description="Folder of .yar/.yara rule files, compiled once and reloaded on change"
    )
    timeout: Duration = Field(10.0, description="Time YARA may take for the items of one message")
    required: bool = Field(False, description="YARA must answer for every message, whatever the bias")


# The Office/RTF findings (oletools) and the field of [antivirus.office] that says what each does.
OFFICE_FINDINGS = {
    "AV_MACRO": "vba_macro",
    "AV_MACRO_AUTOEXEC": "vba_autoexec",
    "AV_MACRO_SUSPICIOUS": "vba_suspicious",
    "AV_XLM_MACRO": "xlm_macro",
    "AV_DDE": "dde",
    "AV_OLE_OBJECT": "ole_object",
    "AV_EXTERNAL_REFERENCE": "external_reference",
    "ARCHIVE_ENCRYPTED": "encrypted",
}


class OfficeConfig(_Section):
    enabled: bool = Field(True, description="Analyse Office and RTF documents with oletools")
    timeout: Duration = Field(10.0, description="Time the analysis may take for the items of one message")
    required: bool = Field(False, description="The analysis must answer for every message, whatever the bias")
    vba_macro: FindingAction = Field(
        "score", description="A document with VBA, OpenDocument Basic or script macros (AV_MACRO)"
    )
    vba_autoexec: FindingAction = Field(
        "reject",
        description=(
            "Macros run on open or close (VBA AutoOpen, Document_Open; XLM Auto_Open; ODF load events:"
            " AV_MACRO_AUTOEXEC)"
        ),
    )
    vba_suspicious: FindingAction = Field(
        "score",
        description=(
            "Macros with suspicious calls (VBA Shell, CreateObject; XLM EXEC, CALL, REGISTER,"
            " URLDownloadToFile ...: AV_MACRO_SUSPICIOUS)"
        ),
    )
    xlm_macro: FindingAction = Field("reject", description="Excel 4 (XLM) macros (AV_XLM_MACRO)")
    dde: FindingAction = Field("reject", description="DDE links that start programs (AV_DDE)")
    ole_object: FindingAction = Field("score", description="Embedded OLE objects (AV_OLE_OBJECT)")
    external_reference: FindingAction = Field(
        "reject",
        description="External relationships: remote templates, 'Follina' (AV_EXTERNAL_REFERENCE)",
    )
    encrypted: FindingAction = Field(
        "score",
        description=(
            "A legacy-encrypted .doc/.xls/.ppt no default password opens (ARCHIVE_ENCRYPTED; only the"
            " Office analysis sees these: [attachments] encrypted_action covers archives and OOXML)"
        ),
    )
    workers: int = Field(
        2, ge=1, le=32, description="Worker processes for the analysis (one is killed at the timeout)"
    )

    def action_for(self, finding: str) -> FindingAction | None:
        """What an Office finding does; None for a name that is not an Office finding."""
        field = OFFICE_FINDINGS.get(finding)
        action: FindingAction | None = getattr(self, field) if field else None
        return action


class HashesConfig(_Section):
    file: Path | None = Field(
        None, description="SHA-256 block list (one hex digest per line, '# name' comments); empty: off"
    )
    required: bool = Field(False, description="The hash list must answer for every message")


class UpdatesConfig(_Section):
    freshclam: Path = Field(Path("/usr/bin/freshclam"), description="The freshclam program")
    mirror: str = Field(
        "", description="Private database mirror URL (freshclam PrivateMirror); empty: ClamAV's own"
    )
    custom_urls: tuple[str, ...] = Field(
        (), max_length=50, description="Extra signature databases fetched by freshclam (DatabaseCustomURL)"
    )
    interval: Duration = Field(3600.0, description="How often the gateway runs 'av update'; 0: never")
    max_signature_age: Duration = Field(
        3 * 86400.0, description="Signatures older than this raise the stale-signatures alarm"
    )
    clamd_conf: Path = Field(
        Path("/etc/clamav/clamd.conf"), description="clamd's configuration (its DatabaseDirectory is updated)"
    )
    official_databases: bool = Field(
        True,
        description="Fetch ClamAV's signed main, daily and bytecode databases; off: custom ones only",
    )
    timeout: Duration = Field(900.0, gt=0, description="Time one freshclam run may take before it is stopped")

    @field_validator("mirror", "custom_urls")
    @classmethod
    def _urls(cls, v: str | tuple[str, ...]) -> str | tuple[str, ...]:
        # Each URL becomes one line of the generated freshclam.conf: no line breaks, no spaces.
        for url in (v,) if isinstance(v, str) else v:
            if url and not re.fullmatch(r"(https?|file)://[\x21-\x7e]+", url):
                raise ValueError(f"expected an http(s):// or file:// URL without spaces, found {url!r}")
        return v


class AntivirusConfig(_Section):
    enabled: bool = Field(False, description="Scan every message with the engines below at end of data")
    require: Literal["all", "majority", "any"] = Field(
        "all",
        description=(
            "Scan-engine bias: the enabled engines that must answer for a message to count as scanned"
            " (all, more than half, or at least one)"
        ),
    )
    on_unavailable: Literal["tempfail", "accept"] = Field(
        "tempfail",
        description=(
            "A scan that misses the bias: tempfail (451 4.7.0) or accept (deliver, with AV_UNAVAILABLE"
            " for the score table)"
        ),
    )
    action: Literal["reject", "quarantine", "discard"] = Field(
        "reject", description="An infection: reject (550 5.7.1 naming the virus), quarantine, or discard"
    )
    retry_after: Duration = Field(
        5.0,
        description=(
            "After an engine fails, messages skip it for this long (they get the bias's answer at"
            " once, not after the engine's timeout); then one scan tries it again. 0: ask every time"
        ),
    )
    unscannable: Literal["reject", "tempfail"] = Field(
        "reject",
        description="An item larger than an engine accepts: reject (552 5.3.4) or tempfail (451 4.7.0)",
    )
    clamd: ClamdConfig = ClamdConfig()
    yara: YaraConfig = YaraConfig()
    office: OfficeConfig = OfficeConfig()
    hashes: HashesConfig = HashesConfig()
    updates: UpdatesConfig = UpdatesConfig()
