"""Redaction of the configuration for showing it: walks every model reachable from ``Config`` so a
new field that could hold a secret cannot be shown in clear without a test failing."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from edgeward.config.redact import REDACTED, SECRET, is_secret, redact, scrub_url
from edgeward.config.schema import Config

SENTINEL = "S3NTINEL-never-shown"
# Names that could be about a credential; the walk below judges every field they match.
LOOKS_SENSITIVE = re.compile(
    r"(?<!by)pass|secret|token|key|hmac|cred|auth|salt|private|cookie|sign|otp|bearer|seed|cert|login",
    re.IGNORECASE,
)
# Fields that match LOOKS_SENSITIVE, may hold text, and were reviewed as no secret: say why.
REVIEWED = {
    "SendConnectorConfig.auth_username": "the smart-host account's name; its password is a file",
}


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    stack: list[Any] = [root]
    while stack:
        ann = stack.pop()
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if ann in found:
                continue
            found.append(ann)
            stack.extend(f.annotation for f in ann.model_fields.values())
        else:
            stack.extend(typing.get_args(ann))
    return found


def _holds_text(annotation: Any) -> bool:
    """Whether a value of this type can carry free text (a str somewhere, not a Literal)."""
    if annotation is str:
        return True
    if typing.get_origin(annotation) is Literal:
        return False
    return any(_holds_text(a) for a in typing.get_args(annotation))


MODELS = _models(Config)


def test_the_walk_reaches_every_section() -> None:
    names = {m.__name__ for m in MODELS}
    assert {"Config", "WebhookConfig", "SendConnectorConfig", "PolicyStoreConfig", "DirectoryConfig"} <= names
    assert len(MODELS) > 40


def test_every_field_named_like_a_secret_is_redacted_or_reviewed() -> None:
    unjudged = []
    for model in MODELS:
        for name, field in model.model_fields.items():
            key = f"{model.__name__}.{name}"
            if not LOOKS_SENSITIVE.search(name) or not _holds_text(field.annotation):
                continue
            if not is_secret(name, field) and key not in REVIEWED:
                unjudged.append(key)
    assert unjudged == [], "mark these json_schema_extra=SECRET or review them in REVIEWED"


def test_a_sentinel_in_any_secret_field_of_any_section_is_never_shown() -> None:
    tried = 0
    for model in MODELS:
        for name, field in model.model_fields.items():
            if is_secret(name, field) and _holds_text(field.annotation):
                # model_construct: no validation, so any value goes where a setting could put one.
                shown = json.dumps(redact(model.model_construct(**{name: SENTINEL})))
                assert SENTINEL not in shown, f"{model.__name__}.{name}"
                tried += 1
    assert tried >= 1  # the webhook URL at least


def test_credentials_in_a_url_in_any_text_field_are_never_shown() -> None:
    url = f"https://user:{SENTINEL}@host.example.test/path?token={SENTINEL}&page=2"
    tried = 0
    for model in MODELS:
        for name, field in model.model_fields.items():
            ann = field.annotation
            nested = any(isinstance(a, type) and issubclass(a, BaseModel) for a in typing.get_args(ann))
            if not _holds_text(ann) or nested or typing.get_origin(ann) is dict:
                continue  # sections are walked themselves; mappings are judged by key
            as_tuple = typing.get_origin(ann) is tuple or any(typing.get_origin(a) is tuple
                                                                for a in typing.get_args(ann))  # fmt: skip
            value: object = (url,) if as_tuple else url
            shown = json.dumps(redact(model.model_construct(**{name: value})))
            assert SENTINEL not in shown, f"{model.__name__}.{name}"
            tried += 1
    assert tried > 50


def test_the_whole_configuration_keeps_everything_else() -> None:
    config = Config.model_validate({
        "server": {"data_dir": "/srv/edgeward", "hostname": "mx.example.test"},
        "accepted_domains": ["example.test"],
        "notify": {"webhook": {"url": f"https://hooks.example.test/{SENTINEL}", "key_file": "/etc/k"}},
        "scores": {"SPF_FAIL": 3.0},
    })  # fmt: skip
    shown = redact(config)
    assert SENTINEL not in json.dumps(shown)
    plain = config.model_dump(mode="json")
    plain["notify"]["webhook"]["url"] = REDACTED
    assert shown == plain  # nothing else changed: the key file's path stays, as do the scores


class _Inner(BaseModel):
    api_token: str = ""
    hmac_secret: str | None = None
    marked: str = Field("", json_schema_extra=SECRET)
    password_file: Path | None = None
    note: str = ""


class _Outer(BaseModel):
    inner: _Inner = _Inner()
    many: tuple[_Inner, ...] = ()
    headers: dict[str, str] = {}
    urls: tuple[str, ...] = ()


def test_nested_models_tuples_and_mappings_are_redacted() -> None:
    leaf = _Inner(api_token=SENTINEL, hmac_secret=SENTINEL, marked=SENTINEL,
                  password_file=Path("/etc/pw"), note="kept")  # fmt: skip
    outer = _Outer(inner=leaf, many=(leaf, _Inner()), headers={"X-Api-Key": SENTINEL, "X-Tag": "kept"},
                   urls=(f"redis://:{SENTINEL}@db:6379/0",))  # fmt: skip
    shown = redact(outer)
    assert SENTINEL not in json.dumps(shown)
    assert shown["inner"] == {"api_token": REDACTED, "hmac_secret": REDACTED, "marked": REDACTED,
                              "password_file": "/etc/pw", "note": "kept"}  # fmt: skip
    assert shown["many"][1] == {"api_token": "", "hmac_secret": None, "marked": "", "password_file": None,
                                "note": ""}  # fmt: skip
    assert shown["headers"] == {"X-Api-Key": REDACTED, "X-Tag": "kept"}
    assert shown["urls"] == [f"redis://{REDACTED}@db:6379/0"]


def test_scrub_url() -> None:
    assert scrub_url("https://example.test/a?page=2") == "https://example.test/a?page=2"
    assert scrub_url("not a url: user:pw@x") == "not a url: user:pw@x"
    assert scrub_url("ldaps://cn=admin:pw@dc.example.test") == f"ldaps://{REDACTED}@dc.example.test"
    assert scrub_url("https://h.test/x?sig=abc&a=1&access_token=z") == (
        f"https://h.test/x?sig={REDACTED}&a=1&access_token={REDACTED}"
    )
