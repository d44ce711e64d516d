"""``[[rules]]``: transport rules, Exchange Edge's rules with conditions, exceptions and actions.

Each rule has a ``name`` (unique), a ``priority`` (lower runs first; equal priorities keep file
order), ``enabled``, ``conditions`` (every condition given must hold; inside a list, any item
may), ``exceptions`` (any one exception that holds stops the rule), ``actions`` and ``stop``
(Exchange's StopRuleProcessing: later rules are not evaluated once this one matched).

Conditions: ``from``/``to`` (addresses), ``from_domains``/``to_domains`` (a domain and its
subdomains), ``from_groups``/``to_groups`` (groups of the group file), ``direction``
(``inbound``: from a client without relay rights; ``outbound``: authenticated or relay-permitted),
``headers`` (``{name, contains = [...]}`` or ``{name, matches = "regex"}``), ``subject_contains``,
``subject_matches``, ``subject_or_body_contains``, ``subject_or_body_matches``, ``attachment``
(present), ``attachment_names`` (``*.ext`` or exact), ``attachment_types`` (the true type read from
the content, ``type/*`` allowed), ``scl_min``/``scl_max`` (the content filter's SCL; -1 for exempt
mail), ``size_over``.

Actions that decide (the ``transport-rules`` agent, before the ``250``): ``reject`` (``{code,
enhanced, text}``, default Exchange's ``550 5.7.1 Delivery not authorized, message refused``),
``quarantine``, ``disconnect``, ``set_scl`` (0-9: a ``RULE_SCL_<n>`` finding weighing n). Actions
that change (the rules transform, after acceptance): ``prepend_subject``, ``add_headers``,
``remove_headers``, ``redirect_to``, ``bcc``, ``copy_to`` (Exchange's CopyTo: added to the
envelope and to the ``Cc`` field, so the copy is on record in the message), ``disclaimer``
(``{text, html, signed}``). ``log_event_text`` (Exchange's LogEventText) changes nothing: the
agent logs the text and reports it as a ``RULE_LOG_EVENT`` finding, which the message's
tracking line carries (``edgeward track why``).

Regular expressions are RE2 (``google-re2``): matching is linear in the text, so no pattern an
operator writes can make a message take exponential time, and there is no timeout to tune.
Each pattern is compiled at load; one that is invalid, longer than ``MAX_PATTERN`` characters or
whose compiled program is bigger than ``MAX_PROGRAM`` is a configuration error naming the rule.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import re2
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "DEFAULT_REJECT_TEXT",
    "GROUPS_FILE",
    "Disclaimer",
    "HeaderCondition",
    "RejectAction",
    "RuleActions",
    "RuleConditions",
    "TransportRule",
    "compile_pattern",
    "ordered",
]

DEFAULT_REJECT_TEXT = "Delivery not authorized, message refused"
# The group file the group conditions read (``group address`` per line) until the directory
# replica answers them; relative to ``server.data_dir``.
GROUPS_FILE = Path("groups.txt")
MAX_PATTERN = 1000
MAX_PROGRAM = 5000  # RE2 program size (instructions): a guard on memory per match
MAX_RULES = 500


def compile_pattern(pattern: str) -> re2._Regexp[str]:
    """``pattern`` as RE2, case-insensitive; ValueError with the reason when it is refused."""
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"regular expression longer than {MAX_PATTERN} characters")
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = False
    options.max_mem = 1 << 20
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        first = exc.args[0] if exc.args else ""
        reason = first.decode("utf-8", "replace") if isinstance(first, bytes) else str(first)
        raise ValueError(f"invalid regular expression {pattern!r}: {reason}") from None
    if compiled.programsize > MAX_PROGRAM:
        raise ValueError(
            f"regular expression {pattern!r} is too complex ({compiled.programsize} > {MAX_PROGRAM} steps)"
        )
    return compiled


def _pattern(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression, found {type(value).__name__}")
    compile_pattern(value)
    return value


def _lower(value: object) -> object:
    if isinstance(value, list | tuple):
        return tuple(v.strip().lower() if isinstance(v, str) else v for v in value)
    return value


def _size(value: object) -> int:
    from edgeward.config.schema import parse_size  # schema imports this module

    return parse_size(value)


Pattern = Annotated[str, BeforeValidator(_pattern)]
Words = Annotated[tuple[Annotated[str, Field(min_length=1, max_length=500)], ...], BeforeValidator(_lower)]
Mailbox = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]
Addresses = Annotated[tuple[Mailbox, ...], BeforeValidator(_lower)]
Domains = Annotated[tuple[Annotated[str, Field(pattern=r"^[a-z0-9_.-]+$")], ...], BeforeValidator(_lower)]


class _Section(BaseModel):
    # serialize_by_alias: "config show" prints "from", the key the file uses, not "from_".
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, serialize_by_alias=True)
    kind: ClassVar[str] = "field"

    @model_validator(mode="before")
    @classmethod
    def _known(cls, data: Any) -> Any:
        # pydantic's own message ("Extra inputs are not permitted") does not say what is allowed.
        if isinstance(data, dict):
            known = {f.alias or n for n, f in cls.model_fields.items()} | set(cls.model_fields)
            unknown = sorted(str(k) for k in data if k not in known)
            if unknown:
                what = cls.kind
                allowed = ", ".join(sorted(f.alias or n for n, f in cls.model_fields.items()))
                raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; known: {allowed}")
        return data


class HeaderCondition(_Section):
    """A header field (by name) whose decoded value contains a word or matches a pattern."""

    kind: ClassVar[str] = "header condition key"
    name: str = Field(pattern=r"^[!-9;-~]{1,76}$", description="Header field name")
    contains: Words = Field((), description="Words, any of which the value contains (case-insensitive)")
    matches: Pattern | None = Field(None, description="An RE2 pattern the value matches (case-insensitive)")

    @model_validator(mode="after")
    def _one(self) -> HeaderCondition:
        if not self.contains and self.matches is None:
            raise ValueError(f"header condition on {self.name!r} needs 'contains' or 'matches'")
        return self


class RuleConditions(_Section):
    """What a message must be for a rule to apply (as conditions) or not (as exceptions)."""

    kind: ClassVar[str] = "condition"
    from_: Addresses = Field((), alias="from", description="Envelope senders (addresses)")
    to: Addresses = Field((), description="Envelope recipients (any of them)")
    from_domains: Domains = Field((), description="Sender domains, subdomains included")
    to_domains: Domains = Field((), description="Recipient domains (any recipient), subdomains included")
    from_groups: Words = Field((), description="Groups of the group file holding the sender")
    to_groups: Words = Field((), description="Groups of the group file holding any recipient")
    direction: Literal["inbound", "outbound"] | None = Field(None, description="Where the message goes")
    headers: tuple[HeaderCondition, ...] = Field((), description="Header fields that contain or match")
    subject_contains: Words = Field((), description="Words in the subject")
    subject_matches: Pattern | None = Field(None, description="RE2 pattern the subject matches")
    subject_or_body_contains: Words = Field((), description="Words in the subject or a text body part")
    subject_or_body_matches: Pattern | None = Field(None, description="RE2 pattern on subject or text body")
    attachment: bool | None = Field(None, description="The message has (true) or has no (false) attachment")
    attachment_names: Words = Field((), description="Attachment file names, exact or *.ext")
    attachment_types: Words = Field((), description="Attachment true types (from the content), type/*")
    scl_min: int | None = Field(None, ge=-1, le=9, description="SCL at least this (-1 for exempt mail)")
    scl_max: int | None = Field(None, ge=-1, le=9, description="SCL at most this")
    size_over: Annotated[int, BeforeValidator(_size)] | None = Field(None, description="Message larger than")

    def given(self) -> list[str]:
        """The names of the conditions set, in declaration order."""
        return [n for n in type(self).model_fields if getattr(self, n) is not None and getattr(self, n) != ()]


class RejectAction(_Section):
    """Exchange's SmtpRejectMessage: the refusal a matching message gets at end of data."""

    kind: ClassVar[str] = "reject key"
    code: int = Field(550, ge=400, le=599, description="SMTP reply code (4xx tempfails, 5xx refuses)")
    enhanced: str = Field("5.7.1", pattern=r"^[45]\.\d{1,3}\.\d{1,3}$", description="Enhanced status code")
    text: str = Field(DEFAULT_REJECT_TEXT, min_length=1, max_length=240, description="Reply text")

    @model_validator(mode="after")
    def _classes(self) -> RejectAction:
        if str(self.code)[0] != self.enhanced[0]:
            raise ValueError(f"reply code {self.code} and enhanced code {self.enhanced} disagree in class")
        if any(not ch.isprintable() for ch in self.text):
            raise ValueError("reject text holds control characters")
        return self


class Disclaimer(_Section):
    """Text appended to every text/plain and text/html part."""

    kind: ClassVar[str] = "disclaimer key"
    text: str = Field(min_length=1, max_length=5000, description="Plain text (HTML-escaped for HTML parts)")
    html: str | None = Field(None, max_length=20000, description="Markup for HTML parts instead of the text")
    signed: Literal["wrap", "skip"] = Field(
        "wrap",
        description=(
            "Signed or encrypted mail: wrap (the original untouched as an attachment of a new"
            " message carrying the disclaimer) or skip (deliver it without one)"
        ),
    )


def _header_name(value: str) -> str:
    if not re.fullmatch(r"[!-9;-~]{1,76}", value):
        raise ValueError(f"invalid header field name {value!r}")
    return value


class RuleActions(_Section):
    """What a matching rule does."""

    kind: ClassVar[str] = "action"
    reject: RejectAction | None = Field(None, description="Refuse at end of data")
    quarantine: bool = Field(False, description="Hold in the quarantine")
    disconnect: bool = Field(False, description="Close the connection without accepting")
    set_scl: int | None = Field(None, ge=0, le=9, description="Add the finding RULE_SCL_<n> (weighs n)")
    prepend_subject: str | None = Field(None, min_length=1, max_length=200, description="Subject prefix")
    add_headers: dict[str, Annotated[str, Field(max_length=900)]] = Field(
        default_factory=dict, description="Header fields to set (name = value), replacing any present"
    )
    remove_headers: tuple[str, ...] = Field((), description="Header field names to remove")
    redirect_to: Addresses = Field((), description="Replace the recipients with these")
    bcc: Addresses = Field((), description="Add these recipients (blind copy)")
    copy_to: Addresses = Field((), description="Add these recipients and name them in Cc (a copy on record)")
    log_event_text: str | None = Field(
        None, min_length=1, max_length=500, description="Log this text and track it with the message"
    )
    disclaimer: Disclaimer | None = None

    @field_validator("add_headers")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            _header_name(name)
            if any(not ch.isprintable() for ch in value):
                raise ValueError(f"header {name!r}: value holds control characters")
        return v

    @field_validator("copy_to")
    @classmethod
    def _copy_to(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        # These go into the Cc field as they are: a plain addr-spec, nothing a header could misread.
        for address in v:
            if not re.fullmatch(r"[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[a-z0-9.-]{1,253}", address):
                raise ValueError(f"copy_to: {address!r} is not a plain address (letters, digits, .-_+ ...)")
        return v

    @field_validator("remove_headers")
    @classmethod
    def _removed(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_header_name(n) for n in v)

    @field_validator("prepend_subject", "log_event_text")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        if v is not None and any(not ch.isprintable() for ch in v):
            raise ValueError("the text holds control characters")
        return v

    @property
    def deciding(self) -> list[str]:
        return [n for n in ("reject", "quarantine", "disconnect") if getattr(self, n)]

    @property
    def changing(self) -> bool:
        return bool(self.prepend_subject or self.add_headers or self.remove_headers or self.redirect_to
                    or self.bcc or self.copy_to or self.disclaimer)  # fmt: skip


class TransportRule(_Section):
    """One ``[[rules]]`` entry."""

    kind: ClassVar[str] = "rule key"
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
    priority: int = Field(0, description="Lower runs first; equal priorities keep file order")
    enabled: bool = True
    comment: str = ""
    conditions: RuleConditions = RuleConditions()
    exceptions: RuleConditions = RuleConditions()
    actions: RuleActions
    stop: bool = Field(False, description="Evaluate no later rule once this one matched")

    @model_validator(mode="after")
    def _acts(self) -> TransportRule:
        acts = self.actions
        if len(acts.deciding) > 1:
            raise ValueError(f"rule {self.name!r}: choose one of {', '.join(acts.deciding)}")
        if not acts.deciding and not acts.changing and acts.set_scl is None and not acts.log_event_text:
            raise ValueError(f"rule {self.name!r} has no action")
        if acts.redirect_to and acts.deciding:
            raise ValueError(f"rule {self.name!r}: redirect_to with {acts.deciding[0]} is contradictory")
        return self


def check_rules(rules: tuple[TransportRule, ...]) -> tuple[TransportRule, ...]:
    """Names unique (findings and the listing name rules), and a bound on their number."""
    if len(rules) > MAX_RULES:
        raise ValueError(f"at most {MAX_RULES} rules")
    names = [r.name.lower() for r in rules]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"duplicate rule names: {', '.join(dup)}")
    return rules


def ordered(rules: tuple[TransportRule, ...]) -> list[TransportRule]:
    """The rules in evaluation order: priority, then file order (``sorted`` is stable)."""
    return sorted(rules, key=lambda r: r.priority)
