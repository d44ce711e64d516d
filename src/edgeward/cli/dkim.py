"""``edgeward dkim``: the key of ``[dkim_sign]`` and the DNS record that publishes it.

* ``keygen [-c CONFIG] [--force] [--json]``: a new RSA key (``[dkim_sign] bits``) written to
  ``key_file`` (0600, owned by the service user when run as root, written to a temporary name
  and renamed so the gateway never reads half a key), then the TXT record for every domain;
  an existing key is kept unless ``--force``.
* ``record [-c CONFIG] [--json]``: the TXT records for the key in ``key_file``.

Exit codes: 0 done, 2 bad input (no selector or domain configured, a key that exists, a key
file that cannot be read or is no RSA key).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from edgeward.cli.queue import ConfigOption, console, fail, load
from edgeward.config.dkim_sign import DkimSignConfig
from edgeward.config.load import DEFAULT_CONFIG_PATH
from edgeward.config.ownership import make_private_dirs, service_owner
from edgeward.queue.files import sync_dir, unlink_quiet, write_new
from edgeward.senderauth.dkimsign import DkimSignError, generate_key, txt_record

dkim_app = typer.Typer(help="DKIM signing: keygen, record.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _records(cfg: DkimSignConfig, key: bytes) -> list[dict[str, object]]:
    try:
        strings = txt_record(key)
    except (DkimSignError, ValueError, TypeError) as exc:
        fail(f"the key is not a usable RSA private key: {exc}")
    return [
        {"name": f"{cfg.selector}._domainkey.{d}.", "type": "TXT", "strings": list(strings)}
        for d in cfg.domains
    ]


def _print(records: list[dict[str, object]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(records))
        return
    out = console()
    for r in records:
        strings = r["strings"]
        assert isinstance(strings, list)
        quoted = " ".join(f'"{s}"' for s in strings)
        # Never wrapped: the line goes into a zone file as it is.
        out.print(Text(f"{r['name']} IN TXT ( {quoted} )"), soft_wrap=True)


def _needs(cfg: DkimSignConfig) -> None:
    if not cfg.selector or not cfg.domains:
        fail("[dkim_sign] needs a selector and at least one domain before a key is made")


@dkim_app.command("keygen")
def keygen(
    config_path: ConfigOption = DEFAULT_CONFIG_PATH,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make the signing key and print the TXT record to publish for each domain."""
    config = load(config_path)
    cfg = config.dkim_sign
    _needs(cfg)
    path = config.resolve(cfg.key_file)
    if path.exists() and not force:
        fail(f"{path} exists; --force replaces it (publish the new record first)")
    key = generate_key(cfg.bits)
    owner = service_owner(path.parent)
    make_private_dirs(path.parent, owner=owner)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    unlink_quiet(tmp)
    write_new(tmp, key, sync=True, owner=owner)
    os.replace(tmp, path)
    sync_dir(path.parent)
    if not as_json:
        console().print(Text(f"wrote {path}"))
    _print(_records(cfg, key), as_json)


@dkim_app.command("record")
def record(config_path: ConfigOption = DEFAULT_CONFIG_PATH, as_json: JsonOption = False) -> None:
    """Print the TXT record of the existing key for each domain."""
    config = load(config_path)
    cfg = config.dkim_sign
    _needs(cfg)
    path: Path = config.resolve(cfg.key_file)
    try:
        key = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    _print(_records(cfg, key), as_json)
