"""The effective configuration with every secret taken out, for showing it (the web console).

The design keeps secrets out of the TOML: passwords and keys live in files named by
``*_file`` settings (0600), so the configuration itself can be shown, copied and checked in.
This module makes that hold for what is shown even when a setting breaks the rule, in three
ways:

- **by marker**: a field declared with ``json_schema_extra=SECRET`` is always redacted (a
  webhook URL, which for many receivers is itself the credential);
- **by name**: a field whose name says password, secret, token, key, HMAC or credential is
  redacted, unless it holds a path (``password_file``, ``seal_key``): a path says where the
  secret is, not what it is, and an administrator needs to see which file is used;
- **by shape**: in every string that is a URL, the user-info (``user:pass@``) and the values of
  query parameters named like secrets (``?token=``, ``?sig=``) are redacted; keys of mappings
  (headers a rule adds) are judged by name as fields are.

``tests/config/test_redact.py`` walks the whole ``Config`` model, so a new field that looks
like a secret and is neither marked nor caught by name fails a test rather than leaking.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = ["REDACTED", "SECRET", "is_secret", "is_secret_name", "redact", "scrub_url"]

SECRET: dict[str, Any] = {"secret": True}
REDACTED = "(redacted)"
_SECRET_NAME = re.compile(
    r"pass(word|wd|phrase)|(^|[_-])pass$|secret|token|api[_-]?key|private|hmac|credential|cookie"
    r"|(^|[_-])key($|[_-])",
    re.IGNORECASE,
)
_SECRET_PARAM = re.compile(r"sig(nature)?$|auth|code$|" + _SECRET_NAME.pattern, re.IGNORECASE)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def _is_path(annotation: Any) -> bool:
    """True for ``Path`` and ``Path | None`` (and tuples of paths)."""
    if annotation is Path:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, tuple):
        args = [a for a in typing.get_args(annotation) if a not in (type(None), Ellipsis)]
        return bool(args) and all(_is_path(a) for a in args)
    return False


def is_secret(name: str, field: FieldInfo) -> bool:
    """Whether a field's value is redacted when shown (see the module's docstring)."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and extra.get("secret") is True:
        return True
    return is_secret_name(name) and not _is_path(field.annotation)


def scrub_url(text: str) -> str:
    """``text`` with a URL's user-info and secret-named query values redacted; other text as is."""
    if not _URL.match(text):
        return text
    try:
        parts = urlsplit(text)
        has_userinfo = "@" in parts.netloc
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return REDACTED  # a URL too broken to take apart could hide anything
    netloc = f"{REDACTED}@{parts.netloc.rpartition('@')[2]}" if has_userinfo else parts.netloc
    if any(_SECRET_PARAM.search(k) for k, _ in query):
        cleaned = [(k, REDACTED if _SECRET_PARAM.search(k) else v) for k, v in query]
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(cleaned, safe="()"), parts.fragment))
    if has_userinfo:
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return text


def _empty(value: object) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _value(attr: object, value: Any) -> Any:
    if isinstance(attr, BaseModel) and isinstance(value, dict):
        return _model(attr, value)
    if isinstance(attr, tuple | list) and isinstance(value, list):
        return [_value(a, v) for a, v in zip(attr, value, strict=False)]
    if isinstance(value, dict):
        source = attr if isinstance(attr, dict) else {}
        return {
            k: REDACTED if is_secret_name(str(k)) and not _empty(v) else _value(source.get(k), v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_value(None, v) for v in value]
    if isinstance(value, str):
        return scrub_url(value)
    return value


def _model(model: BaseModel, dumped: dict[str, Any]) -> dict[str, Any]:
    fields = type(model).model_fields
    out: dict[str, Any] = {}
    for name, value in dumped.items():
        field = fields.get(name)
        if is_secret(name, field) if field is not None else is_secret_name(name):
            out[name] = value if _empty(value) else REDACTED
        else:
            out[name] = _value(getattr(model, name, None), value)
    return out


def redact(model: BaseModel) -> dict[str, Any]:
    """``model.model_dump(mode="json")`` (what ``config show`` prints) with the secrets redacted."""
    return _model(model, model.model_dump(mode="json"))
