"""Reading the directory over LDAP (ldap3), safely.

- TLS always verified: ``ldaps://`` or StartTLS on ``ldap://``, with ``Tls(validate=
  CERT_REQUIRED)`` against ``ca_file`` (or the system store) and the server's name checked;
  ldap3's default (no verification) never runs here. A plaintext connection is made only to a
  loopback address with ``allow_plaintext_loopback`` (``config.directory`` refuses the rest).
- A bind with an empty password is refused before connecting: RFC 4513 §5.1.2 makes it an
  unauthenticated bind, which a server "accepts" without checking anything.
- Referrals are not chased unless ``follow_referrals``; values put into filters are escaped
  (RFC 4515, :func:`value_filter`).
- Searches are paged (RFC 2696 simple paged results) with ``page_size``; AD answers at most
  1,000 entries a page and OpenLDAP may be limited likewise.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ldap3 import NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from edgeward.config.directory import DirectoryConfig, is_loopback_url

log = logging.getLogger("edgeward.directory.ldap")

PAGED_RESULTS = "1.2.840.113556.1.4.319"


class DirectoryError(Exception):
    """The directory cannot be read: down, TLS refused, bind refused, a search failed."""


@dataclass(frozen=True, slots=True)
class RawEntry:
    dn: str
    attributes: dict[str, list[bytes]]

    def values(self, name: str) -> list[bytes]:
        """An attribute's values; names compare case-insensitively, as LDAP's do."""
        lowered = name.lower()
        for key, vals in self.attributes.items():
            if key.lower() == lowered:
                return vals
        return []

    def text(self, name: str) -> list[str]:
        return [v.decode("utf-8", "replace") for v in self.values(name)]


def value_filter(attribute: str, value: str) -> str:
    """``(attribute=value)`` with ``value`` escaped (RFC 4515): ``*``, ``(``, ``)``, ``\\``, NUL."""
    return f"({attribute}={escape_filter_chars(value)})"


def read_password(path: Path | None) -> str:
    if path is None:
        raise DirectoryError("[directory] password_file is not set")
    try:
        if path.stat().st_mode & 0o077:
            raise DirectoryError(f"{path}: the bind password is readable by others; chmod 600 it")
        password = path.read_text("utf-8").strip("\r\n")
    except OSError as exc:
        raise DirectoryError(f"{path}: cannot read the bind password ({exc.strerror})") from None
    if not password:
        raise DirectoryError(f"{path}: the bind password is empty (an unauthenticated bind is not a login)")
    return password


class VerifiedTls(Tls):  # type: ignore[misc]  # ldap3 has no type hints
    """ldap3's Tls, wrapping with an ``SSLContext`` that verifies the chain and the host name.

    ldap3 checks names itself with ``ssl.match_hostname``, deprecated and gone from Python
    3.12; the standard context's own check (``check_hostname``) is the one that lasts.
    """

    def __init__(self, ca_file: Path | None, host: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca_file) if ca_file else None)
        self.context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.host = host

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self.context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self.host,
        )


class LdapDirectory:
    """One bound connection to the first server of ``urls`` that answers."""

    def __init__(self, cfg: DirectoryConfig, password: str) -> None:
        if not cfg.urls or not cfg.base_dn:
            raise DirectoryError("[directory] needs urls and base_dn")
        if not cfg.bind_dn:
            raise DirectoryError("[directory] bind_dn is not set (an anonymous bind is not a login)")
        if not password:
            raise DirectoryError("the bind password is empty (an unauthenticated bind is not a login)")
        self.cfg = cfg
        self._password = password
        self.conn: Connection | None = None
        self.url = ""

    def _tls(self, host: str) -> Tls:
        return VerifiedTls(self.cfg.ca_file, host)

    def open(self) -> LdapDirectory:
        problems: list[str] = []
        for url in self.cfg.urls:
            try:
                self.conn = self._connect(url)
                self.url = url
                return self
            except (LDAPException, OSError, ssl.SSLError) as exc:
                problems.append(f"{url}: {exc}")
                log.warning("directory %s: %s", url, exc)
        raise DirectoryError("; ".join(problems) or "no server")

    def _connect(self, url: str) -> Connection:
        parts = urlsplit(url)
        host = parts.hostname or ""
        secure = parts.scheme == "ldaps"
        plaintext = not secure and not self.cfg.starttls
        if plaintext and not (self.cfg.allow_plaintext_loopback and is_loopback_url(url)):
            raise DirectoryError(f"{url}: plaintext LDAP refused (not loopback, or not allowed)")
        server = Server(
            host,
            port=parts.port or (636 if secure else 389),
            use_ssl=secure,
            tls=None if plaintext else self._tls(host),
            get_info=NONE,
            connect_timeout=max(1, int(self.cfg.timeout)),
        )
        conn = Connection(
            server,
            user=self.cfg.bind_dn,
            password=self._password,
            authentication=SIMPLE,
            auto_referrals=self.cfg.follow_referrals,
            read_only=True,
            raise_exceptions=True,
            receive_timeout=max(1, int(self.cfg.timeout)),
            return_empty_attributes=False,
        )
        try:
            conn.open()
            if not secure and not plaintext:
                conn.start_tls()
            conn.bind()
        except BaseException:
            _drop(conn)
            raise
        return conn

    def close(self) -> None:
        if self.conn is not None:
            _drop(self.conn)
            self.conn = None

    def __enter__(self) -> LdapDirectory:
        return self.open()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def search(
        self,
        base: str,
        filter_: str,
        attributes: list[str],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Iterator[RawEntry]:
        """Entries under ``base`` matching ``filter_``, page by page."""
        assert self.conn is not None, "open() first"
        cookie: bytes | str | None = None
        while True:
            try:
                self.conn.search(
                    base,
                    filter_,
                    SUBTREE,
                    attributes=attributes,
                    paged_size=self.cfg.page_size,
                    paged_cookie=cookie,
                    time_limit=int(self.cfg.timeout),
                )
            except (LDAPException, OSError) as exc:
                raise DirectoryError(f"search of {base} failed: {exc}") from exc
            count = 0
            for item in self.conn.response or ():
                if item.get("type") != "searchResEntry":
                    if item.get("type") == "searchResRef" and not self.cfg.follow_referrals:
                        log.info("directory: referral %s not followed", item.get("uri"))
                    continue
                count += 1
                yield RawEntry(item["dn"], dict(item["raw_attributes"]))
            if progress is not None:
                progress(count)
            controls = (self.conn.result or {}).get("controls") or {}
            cookie = controls.get(PAGED_RESULTS, {}).get("value", {}).get("cookie")
            if not cookie:
                return


def _drop(conn: Connection) -> None:
    """Unbind, and close the socket whatever the server did (a dead server cannot hear unbind)."""
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        sock.close()
