"""A private OpenLDAP server for the directory tests and the benchmark.

:class:`Slapd` builds a cn=config in a temporary folder with ``slapadd -n0`` (schemas core,
cosine, inetorgperson, nis, the Edgeward list attributes and a small Active-Directory-like
schema: ``user``, ``contact``, ``group``, ``proxyAddresses``, ``objectGUID``, an ordered
``uSNChanged``), one MDB database for ``dc=example,dc=org``, and starts ``slapd -d0`` on
loopback with ``ldap://`` (StartTLS) and ``ldaps://`` listeners whose certificate comes from a
test CA (trustme). The sync account ``cn=sync,ou=services,dc=example,dc=org`` can read but is
held to 1,000 entries a page and per unpaged search, as AD holds every client, so a sync that
does not page fails.

:class:`AdUsn` plays AD's part of keeping ``uSNChanged``: the helpers writing AD-like entries
stamp each write with the next number.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from ldap3 import MODIFY_REPLACE, SIMPLE, Connection, Server
from ldap3.utils.dn import escape_rdn

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "root-secret"
SYNC_DN = f"cn=sync,ou=services,{SUFFIX}"
SYNC_PW = "sync-secret"
SCHEMA_DIR = Path("/etc/ldap/schema")

EXTRA_SCHEMA = """dn: cn=edgeward,cn=schema,cn=config
objectClass: olcSchemaConfig
cn: edgeward
olcAttributeTypes: ( 1.3.6.1.4.1.99999.1.1 NAME 'mailAlternateAddress' EQUALITY caseIgnoreIA5Match
  SUBSTR caseIgnoreIA5SubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
olcAttributeTypes: ( 1.3.6.1.4.1.99999.1.2 NAME 'edgewardSafeSender' EQUALITY caseIgnoreIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
olcAttributeTypes: ( 1.3.6.1.4.1.99999.1.3 NAME 'edgewardBlockedSender' EQUALITY caseIgnoreIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
olcAttributeTypes: ( 1.3.6.1.4.1.99999.1.4 NAME 'edgewardSafeRecipient' EQUALITY caseIgnoreIA5Match
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
olcAttributeTypes: ( 1.3.6.1.4.1.99999.2.1 NAME 'proxyAddresses' EQUALITY caseIgnoreMatch
  SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
olcAttributeTypes: ( 1.3.6.1.4.1.99999.2.2 NAME 'objectGUID' EQUALITY octetStringMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
olcAttributeTypes: ( 1.3.6.1.4.1.99999.2.3 NAME 'uSNChanged' EQUALITY integerMatch
  ORDERING integerOrderingMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
olcAttributeTypes: ( 1.3.6.1.4.1.99999.2.4 NAME 'sAMAccountName' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
olcAttributeTypes: ( 1.3.6.1.4.1.99999.2.5 NAME 'msExchAcceptedDomainName' EQUALITY caseIgnoreMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
olcObjectClasses: ( 1.3.6.1.4.1.99999.3.1 NAME 'edgewardMailUser' AUXILIARY
  MAY ( mailAlternateAddress $ edgewardSafeSender $ edgewardBlockedSender $ edgewardSafeRecipient ) )
olcObjectClasses: ( 1.3.6.1.4.1.99999.4.1 NAME 'user' SUP organizationalPerson STRUCTURAL
  MAY ( sAMAccountName $ mail $ proxyAddresses $ objectGUID $ uSNChanged $ edgewardSafeSender $
  edgewardBlockedSender $ edgewardSafeRecipient ) )
olcObjectClasses: ( 1.3.6.1.4.1.99999.4.2 NAME 'contact' SUP organizationalPerson STRUCTURAL
  MAY ( mail $ proxyAddresses $ objectGUID $ uSNChanged ) )
olcObjectClasses: ( 1.3.6.1.4.1.99999.4.3 NAME 'group' SUP top STRUCTURAL MUST cn
  MAY ( mail $ proxyAddresses $ objectGUID $ uSNChanged $ member $ sAMAccountName ) )
olcObjectClasses: ( 1.3.6.1.4.1.99999.4.4 NAME 'msExchAcceptedDomain' SUP top STRUCTURAL MUST cn
  MAY ( msExchAcceptedDomainName $ uSNChanged ) )
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config_ldif(d: Path, limits: str) -> str:
    includes = "".join(
        f"include: file://{SCHEMA_DIR / n}.ldif\n\n" for n in ("core", "cosine", "inetorgperson", "nis")
    )
    return f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {d}/slapd.pid
olcTLSCACertificateFile: {d}/ca.pem
olcTLSCertificateFile: {d}/server.pem
olcTLSCertificateKeyFile: {d}/server.key

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{includes}dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: {limits}

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {d}/db
olcSuffix: {SUFFIX}
olcRootDN: {ROOT_DN}
olcRootPW: {ROOT_PW}
olcDbMaxSize: 2147483648
olcDbIndex: objectClass eq
olcDbIndex: entryUUID eq
olcDbIndex: mail eq
olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none
olcAccess: {{1}}to * by users read by * none

"""


@dataclass
class Slapd:
    """One running slapd; ``start`` and ``stop`` may be called again (the data stays)."""

    root: Path
    ca: trustme.CA
    ldap_port: int = 0
    ldaps_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    connections: list[Connection] = field(default_factory=list)

    @classmethod
    def create(
        cls, root: Path, *, page_limit: int = 1000, names: tuple[str, ...] = ("127.0.0.1", "localhost")
    ) -> Slapd:
        ca = trustme.CA()
        root.mkdir(parents=True, exist_ok=True)
        ca.cert_pem.write_to_path(str(root / "ca.pem"))
        cert = ca.issue_cert(*names)
        cert.private_key_pem.write_to_path(str(root / "server.key"))
        cert.cert_chain_pems[0].write_to_path(str(root / "server.pem"))
        (root / "db").mkdir(exist_ok=True)
        (root / "config").mkdir(exist_ok=True)
        limits = f"size.soft={page_limit} size.hard={page_limit} size.pr={page_limit} size.prtotal=unlimited"
        (root / "config.ldif").write_text(_config_ldif(root, limits) + EXTRA_SCHEMA)
        _run("slapadd", "-n0", "-F", str(root / "config"), "-l", str(root / "config.ldif"))
        (root / "base.ldif").write_text(_base_ldif())
        _run("slapadd", "-n1", "-F", str(root / "config"), "-l", str(root / "base.ldif"))
        return cls(root, ca)

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.ldap_port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def start(self) -> None:
        self.ldap_port = self.ldap_port or free_port()
        self.ldaps_port = self.ldaps_port or free_port()
        urls = f"{self.ldap_url} {self.ldaps_url}"
        self.proc = subprocess.Popen(
            ["slapd", "-F", str(self.root / "config"), "-h", urls, "-d0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited with {self.proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.ldaps_port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("slapd did not start listening")

    def stop(self) -> None:
        for conn in self.connections:
            with contextlib.suppress(Exception):
                conn.unbind()
        self.connections.clear()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def load(self, ldif: str) -> None:
        """Bulk-load entries with slapadd (much faster than adds over LDAP); slapd is restarted."""
        running = self.proc is not None
        self.stop()
        path = self.root / "load.ldif"
        path.write_text(ldif)
        _run("slapadd", "-q", "-n1", "-F", str(self.root / "config"), "-l", str(path))
        path.unlink()
        if running:
            self.start()

    def admin(self) -> Connection:
        """A root connection for loading and changing entries (plaintext loopback, tests only)."""
        conn = Connection(
            Server("127.0.0.1", port=self.ldap_port),
            ROOT_DN,
            ROOT_PW,
            authentication=SIMPLE,
            auto_bind=True,
            raise_exceptions=True,
        )
        self.connections.append(conn)
        return conn

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _run(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


def _base_ldif() -> str:
    ous = ("people", "contacts", "groups", "services", "ad", "domains")
    body = "".join(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n\n" for ou in ous)
    return f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

{body}dn: {SYNC_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: sync
userPassword: {SYNC_PW}

"""


class AdUsn:
    """The next ``uSNChanged``: AD stamps each write, and so do the helpers writing AD-like entries."""

    def __init__(self, start: int = 1000) -> None:
        self.value = start

    def next(self) -> str:
        self.value += 1
        return str(self.value)


def add_user(
    conn: Connection,
    uid: str,
    mail: str,
    *,
    alternates: tuple[str, ...] = (),
    safe: tuple[str, ...] = (),
    blocked: tuple[str, ...] = (),
    safe_recipients: tuple[str, ...] = (),
) -> str:
    dn = f"uid={escape_rdn(uid)},ou=people,{SUFFIX}"
    attrs: dict[str, Any] = {
        "cn": uid,
        "sn": uid,
        "uid": uid,
        "mail": mail,
        "uidNumber": "1000",
        "gidNumber": "1000",
        "homeDirectory": f"/home/{uid}",
    }
    for name, values in (
        ("mailAlternateAddress", alternates),
        ("edgewardSafeSender", safe),
        ("edgewardBlockedSender", blocked),
        ("edgewardSafeRecipient", safe_recipients),
    ):
        if values:
            attrs[name] = list(values)
    conn.add(dn, ["inetOrgPerson", "posixAccount", "edgewardMailUser"], attrs)
    return dn


def users_ldif(count: int, *, start: int = 0, domain: str = "example.org") -> str:
    """``count`` users for :meth:`Slapd.load`, with one alternate address each."""
    return "".join(
        f"dn: uid=u{i},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nobjectClass: posixAccount\n"
        f"objectClass: edgewardMailUser\ncn: u{i}\nsn: u{i}\nuid: u{i}\nuidNumber: {i}\ngidNumber: 100\n"
        f"homeDirectory: /home/u{i}\nmail: u{i}@{domain}\nmailAlternateAddress: alias{i}@{domain}\n\n"
        for i in range(start, start + count)
    )


def replace_attr(conn: Connection, dn: str, name: str, values: list[str] | list[bytes]) -> None:
    conn.modify(dn, {name: [(MODIFY_REPLACE, values)]})
