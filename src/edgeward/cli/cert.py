"""``edgeward cert``: create, request, import, list, bind, renew and remove TLS certificates.

Owns the command-line face of ``edgeward.tls.store``; every decision lives in the store, and
this module only parses options and prints. Every command finds the store as every other
command group finds its data: ``-c/--config FILE`` after the sub-command (``edgeward cert list -c
FILE``) uses that gateway's store; ``--store DIR`` names a store folder directly; without either,
``EDGEWARD_TLS_STORE``, else the store of ``/etc/edgeward/edgeward.toml``. ``-c`` before the
sub-command (``edgeward cert -c FILE list``), the older form, still works.

Exit codes: 0 success, 2 bad input (usage errors, unknown thumbprint, wrong password, key not
matching the certificate, expired certificate, a bound certificate to remove, an unreadable
store). Warnings (chain incomplete, expiring soon, ...) go to stderr and do not fail.

Decisions an administrator would expect:

* ``import`` of an expired certificate is refused unless ``--allow-expired``: it is nearly
  always the wrong file. A certificate that is not valid yet is imported with a warning.
* ``enable`` of an expired certificate is refused unless ``--force``.
* ``remove`` of a bound certificate is refused unless ``--force`` (the bindings go with it).
* ``renew`` of a self-signed certificate replaces it at once; of a CA-issued one it writes a
  request with the same names, and importing the CA's answer moves the bindings.
* Passwords are best given with ``--password-file`` or ``EDGEWARD_CERT_PASSWORD``: a
  ``--password`` on the command line is visible to other users in the process list.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgeward.cli.tables import add_id_column, print_table
from edgeward.tls.errors import CertificateError
from edgeward.tls.info import CertInfo
from edgeward.tls.store import CertificateStore, PendingRequest

cert_app = typer.Typer(
    name="cert", help="Manage the gateway's TLS certificates.", no_args_is_help=True, add_completion=False
)


class KeyType(enum.StrEnum):
    rsa = "rsa"
    ec = "ec"


class Service(enum.StrEnum):
    smtp = "smtp"
    https = "https"


STORE_ENV = "EDGEWARD_TLS_STORE"

StoreOption = Annotated[
    Path | None,
    typer.Option("--store", help=f"Certificate store folder (DATA_DIR/tls); default: ${STORE_ENV}."),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Use this gateway's certificate store (default: /etc/edgeward/edgeward.toml)."
    ),
]


def _configured_store(config: Path) -> Path:
    from edgeward.config.load import load_config
    from edgeward.errors import ConfigError

    try:
        loaded = load_config(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return loaded.resolve(loaded.tls.store)


def _store_dir(store: Path | None, config: Path | None) -> Path:
    """The store folder: ``-c`` or ``--store`` (not both), else the environment, else the default config."""
    if store is not None and config is not None:
        typer.echo("error: give --store or --config, not both", err=True)
        raise typer.Exit(2)
    if store is not None:
        return store
    if config is not None:
        return _configured_store(config)
    if env := os.environ.get(STORE_ENV):
        return Path(env)
    from edgeward.config.load import DEFAULT_CONFIG_PATH

    return _configured_store(DEFAULT_CONFIG_PATH)


@cert_app.callback()
def _from_config(config: ConfigOption = None) -> None:
    """Manage the gateway's TLS certificates."""
    if config is None:
        return
    # The older place for -c: sub-command options are read after this callback, so the store's
    # environment variable carries it to them (an -c or --store after the sub-command wins).
    os.environ[STORE_ENV] = str(_configured_store(config))


SanOption = Annotated[list[str] | None, typer.Option("--san", help="Extra name or IP address (repeatable).")]
KeyTypeOption = Annotated[KeyType, typer.Option("--key-type", help="rsa, or ec (ECDSA P-256).")]
KeySizeOption = Annotated[int, typer.Option("--key-size", help="RSA key size: 2048, 3072 or 4096.")]
ThumbprintArg = Annotated[str, typer.Argument(help="SHA-256 thumbprint, or a unique prefix of 8+ digits.")]
OutOption = Annotated[Path | None, typer.Option("--out", help="Write the request here instead of stdout.")]


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """Turn store errors into a one-line message and exit code 2."""
    try:
        yield
    except CertificateError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: {exc.filename or ''}: {exc.strerror}", err=True)
        raise typer.Exit(2) from None


def _warn(warnings: tuple[str, ...]) -> None:
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)


def _emit_request(request: PendingRequest, out: Path | None) -> None:
    if out is None:
        typer.echo(request.csr_pem.decode(), nl=False)
    else:
        out.write_bytes(request.csr_pem)  # a CSR is public; no special mode needed
        typer.echo(f"request written to {out}", err=True)
    typer.echo(
        f"request {request.id} for {', '.join(request.names)}: its key stays in the store; "
        "import the CA's answer with 'edgeward cert import FILE'",
        err=True,
    )


@cert_app.command("new")
def new(
    fqdn: Annotated[str, typer.Argument(help="Host name (FQDN) the certificate is for.")],
    store: StoreOption = None,
    config: ConfigOption = None,
    san: SanOption = None,
    key_type: KeyTypeOption = KeyType.rsa,
    key_size: KeySizeOption = 2048,
    days: Annotated[int, typer.Option("--days", help="Validity in days.")] = 365,
    service: Annotated[Service | None, typer.Option("--service", help="Bind it to this service now.")] = None,
) -> None:
    """Create a self-signed certificate (CN = FQDN; SANs = FQDN, short name, --san)."""
    with _reported():
        certs = CertificateStore(_store_dir(store, config))
        info = certs.create_self_signed(
            fqdn, extra_sans=san or (), key_type=key_type.value, key_size=key_size, days=days
        )
        if service is not None:
            certs.enable(info.thumbprint, service.value)
    typer.echo(info.thumbprint)
    typer.echo(
        f"created {info.subject} ({', '.join(info.sans)}), valid to {info.not_after:%Y-%m-%d}", err=True
    )


@cert_app.command("request")
def request(
    fqdn: Annotated[str, typer.Argument(help="Host name (FQDN) to request a certificate for.")],
    store: StoreOption = None,
    config: ConfigOption = None,
    san: SanOption = None,
    key_type: KeyTypeOption = KeyType.rsa,
    key_size: KeySizeOption = 2048,
    short_name: Annotated[
        bool, typer.Option("--short-name", help="Also ask for the short host name (private CAs only).")
    ] = False,
    out: OutOption = None,
) -> None:
    """Make a key and a certificate signing request (PEM) for a CA."""
    with _reported():
        pending = CertificateStore(_store_dir(store, config)).request(
            fqdn,
            extra_sans=san or (),
            key_type=key_type.value,
            key_size=key_size,
            include_short_name=short_name,
        )
        _emit_request(pending, out)


@cert_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="PEM chain (leaf and intermediates) or PKCS#12 (.pfx/.p12).")],
    store: StoreOption = None,
    config: ConfigOption = None,
    key: Annotated[Path | None, typer.Option("--key", help="PEM key, if not in FILE or a request.")] = None,
    password: Annotated[
        str | None, typer.Option("--password", envvar="EDGEWARD_CERT_PASSWORD", help="PKCS#12/key password.")
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="Read the password from the first line of this file."),
    ] = None,
    pkcs12: Annotated[
        bool, typer.Option("--pkcs12", help="FILE is PKCS#12 (detected if not given).")
    ] = False,
    allow_expired: Annotated[
        bool, typer.Option("--allow-expired", help="Import an expired certificate (it cannot be bound).")
    ] = False,
) -> None:
    """Import a certificate with its key, or a CA's answer to a pending request."""
    with _reported():
        secret = password
        if password_file is not None:
            secret = password_file.read_text().splitlines()[0] if password_file.stat().st_size else ""
        certs = CertificateStore(_store_dir(store, config))
        if pkcs12 or _looks_like_pkcs12(file):
            result = certs.import_pkcs12(file, secret, allow_expired=allow_expired)
        else:
            result = certs.import_pem(file, key, password=secret, allow_expired=allow_expired)
    _warn(result.warnings)
    typer.echo(result.info.thumbprint)
    typer.echo(f"imported {result.info.subject}, valid to {result.info.not_after:%Y-%m-%d}", err=True)


def _looks_like_pkcs12(path: Path) -> bool:
    if path.suffix.lower() in {".pfx", ".p12"}:
        return True
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        return b"-----BEGIN" not in handle.read(64 * 1024)
    return False  # unreadable: the PEM import reports why


@cert_app.command("list")
def list_(
    store: StoreOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List certificates (soonest expiry first) and pending requests."""
    with _reported():
        certs = CertificateStore(_store_dir(store, config))
        infos, pending = certs.list(), certs.pending()
        now = certs.now()
    if as_json:
        doc = {
            "certificates": [info.to_json() for info in infos],
            "pending": [
                {"id": p.id, "names": list(p.names), "csr": str(p.csr_path), "renews": p.renews}
                for p in pending
            ],
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    console = Console()
    print_table(console, _table(infos, now), keep=[info.thumbprint for info in infos])
    for p in pending:
        console.print(f"pending request {p.id} for {', '.join(p.names)}: {p.csr_path}")


def _table(infos: list[CertInfo], now: datetime) -> Table:
    table = Table(title="Certificates")
    add_id_column(table, "Thumbprint")  # whole: a prefix is what 'cert enable' accepts, not what it shows
    for column in ("Subject", "SANs", "Issuer", "Not after", "Bindings"):
        table.add_column(column, overflow="fold")  # wrap, never cut: every character may matter
    for info in infos:
        expiry = f"{info.not_after:%Y-%m-%d}"
        if info.expired(now):
            expiry = f"[red]{expiry} (expired)[/red]"
        elif info.days_left(now) < 30:
            expiry = f"[yellow]{expiry}[/yellow]"
        # Names come from certificates, which whoever made them chose: text, never markup.
        table.add_row(
            info.thumbprint,
            Text(info.subject),
            Text(", ".join(info.sans)),
            Text("self-signed" if info.self_signed else info.issuer),
            expiry,
            ", ".join(map(str, info.bindings)) or "-",
        )
    return table


@cert_app.command("enable")
def enable(
    thumbprint: ThumbprintArg,
    service: Annotated[Service, typer.Option("--service", help="Service to bind: smtp or https.")],
    connector: Annotated[str | None, typer.Option("--connector", help="Only for this connector.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Bind even if expired.")] = False,
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """Bind a certificate to a service (or one connector of it)."""
    with _reported():
        certs = CertificateStore(_store_dir(store, config))
        previous = certs.enable(thumbprint, service.value, connector, force=force)
        info = certs.get(thumbprint)
    target = service.value if connector is None else f"{service.value} connector {connector!r}"
    replaced = f" (replaces {previous})" if previous else ""
    typer.echo(f"{info.thumbprint} bound to {target}{replaced}")


@cert_app.command("remove")
def remove(
    thumbprint: ThumbprintArg,
    store: StoreOption = None,
    config: ConfigOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Remove even if bound (the bindings go too).")
    ] = False,
) -> None:
    """Delete a certificate and its key from the store."""
    with _reported():
        CertificateStore(_store_dir(store, config)).remove(thumbprint, force=force)
    typer.echo(f"removed {thumbprint}")


@cert_app.command("renew")
def renew(
    thumbprint: ThumbprintArg,
    store: StoreOption = None,
    config: ConfigOption = None,
    keep_old: Annotated[
        bool, typer.Option("--keep-old", help="Keep the old self-signed certificate.")
    ] = False,
    out: OutOption = None,
) -> None:
    """Renew: self-signed now (bindings move); CA-issued by writing a request with the same names."""
    with _reported():
        certs = CertificateStore(_store_dir(store, config))
        if certs.get(thumbprint).self_signed:
            new_thumb = certs.renew(thumbprint, keep_old=keep_old)
            typer.echo(new_thumb)
            typer.echo(f"renewed {thumbprint} as {new_thumb}; bindings moved", err=True)
        else:
            _emit_request(certs.request_renewal(thumbprint), out)


@cert_app.command("renew-due")
def renew_due(
    store: StoreOption = None,
    config: ConfigOption = None,
    within_days: Annotated[int, typer.Option("--within-days", help="Renew what expires within this.")] = 30,
) -> None:
    """Renew self-signed certificates that expire soon; warn about CA-issued ones (for a timer)."""
    with _reported():
        report = CertificateStore(_store_dir(store, config)).renew_due(within_days)
    for old, new_thumb in report.renewed:
        typer.echo(f"renewed {old} as {new_thumb}")
    _warn(report.warnings)
