"""Push over mutual TLS: subscribe on the gateway, push from an inside host reading slapd."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from typer.testing import CliRunner

from edgeward.cli.main import app
from edgeward.config.load import load_config
from edgeward.directory.lists import hashed
from edgeward.directory.push import PushError, _exchange, _own_name, build_listener, push, state_to_json
from edgeward.directory.replica import ReplicaState, read_replica
from edgeward.directory.subscription import Subscription
from edgeward.testing.slapd import SUFFIX, SYNC_DN, SYNC_PW, Slapd, add_user, users_ldif
from tests.ports import free_port

runner = CliRunner()


class Gateway:
    """The gateway side: its configuration and its push listener on a loop in a thread."""

    def __init__(self, root: Path) -> None:
        root.mkdir()
        self.root = root
        self.port = free_port()
        self.config_file = root / "edgeward.toml"
        self.config_file.write_text(
            "accepted_domains = ['example.org']\n[server]\nhostname = 'mx.example.org'\n"
            f"data_dir = '{root}'\n"
            f"[directory]\npush_listen = '127.0.0.1:{self.port}'\n"
        )
        self.replica = root / "state" / "directory.db"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Gateway:
        self.thread.start()
        listener = build_listener(load_config(self.config_file), self.replica)
        self.listener = listener
        asyncio.run_coroutine_threadsafe(listener.start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self.listener.server is not None
            self.listener.server.close()
            await self.listener.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with Gateway(tmp_path / "gateway") as gw:
        yield gw


def _inside(root: Path, server: Slapd) -> Path:
    root.mkdir()
    pw = root / "bind.pw"
    pw.write_text(SYNC_PW)
    pw.chmod(0o600)
    path = root / "edgeward.toml"
    path.write_text(
        f"[server]\ndata_dir = '{root}'\n[directory]\nurls = ['{server.ldaps_url}']\nbase_dn = '{SUFFIX}'\n"
        f"bind_dn = '{SYNC_DN}'\npassword_file = '{pw}'\nca_file = '{server.ca_file}'\n"
    )
    return path


def _cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["directory", *args])
    return result.exit_code, result.output


def test_subscribe_enrol_push_and_push_again(slapd: Slapd, gateway: Gateway, tmp_path: Path) -> None:
    conn = slapd.admin()
    add_user(conn, "alice", "alice@example.org", safe=("@partner.net",))
    sub_file = tmp_path / "sub.json"
    code, out = _cli("subscribe", "-c", str(gateway.config_file), "--out", str(sub_file))
    assert code == 0, out
    assert sub_file.stat().st_mode & 0o777 == 0o600
    assert "secret" in json.loads(sub_file.read_text())
    inside = _inside(tmp_path / "inside", slapd)
    code, out = _cli("push", "-c", str(inside), "--subscription", str(sub_file))
    assert code == 0, out
    assert "pushed to" in out
    state = read_replica(gateway.replica)
    assert state.by_address["alice@example.org"].safe == hashed("@partner.net")
    assert b"partner.net" not in gateway.replica.read_bytes()
    # The gateway keeps no secret in clear, and holds no directory credentials.
    secret = json.loads(sub_file.read_text())["secret"]
    assert all(secret not in p.read_text() for p in (gateway.root / "state" / "edgesync").glob("*.json"))

    add_user(conn, "bob", "bob@example.org")
    code, out = _cli("push", "-c", str(inside), "--subscription", str(sub_file))
    assert code == 0, out
    assert "bob@example.org" in read_replica(gateway.replica).by_address

    # The secret was spent: a second host cannot enrol with the same file.
    other = _inside(tmp_path / "other", slapd)
    code, out = _cli("push", "-c", str(other), "--subscription", str(sub_file))
    assert code == 1 and "used or expired" in out


def test_wrong_or_missing_client_certificate_is_refused(gateway: Gateway, tmp_path: Path) -> None:
    sub_file = tmp_path / "sub.json"
    assert _cli("subscribe", "-c", str(gateway.config_file), "--out", str(sub_file))[0] == 0
    sub = Subscription.read(sub_file)
    state = ReplicaState()
    # A certificate of another CA: the listener's handshake refuses it.
    ca = trustme.CA()
    cert = ca.issue_cert("edgesync-push")
    pem, key = tmp_path / "c.pem", tmp_path / "c.key"
    cert.cert_chain_pems[0].write_to_path(str(pem))
    cert.private_key_pem.write_to_path(str(key))
    # (With TLS 1.3 the client learns it from the connection closing after its certificate.)
    with pytest.raises(PushError, match=r"closed the connection|alert|certificate"):
        push(sub, state, (pem, key))
    # No certificate at all: the push is refused by name.
    with pytest.raises(PushError, match="client certificate"):
        _exchange(sub, {"op": "push", "state": state_to_json(state)}, None)
    assert not gateway.replica.exists()


def test_client_trusts_only_the_gateway_of_the_subscription(gateway: Gateway, tmp_path: Path) -> None:
    sub_file = tmp_path / "sub.json"
    assert _cli("subscribe", "-c", str(gateway.config_file), "--out", str(sub_file))[0] == 0
    sub = Subscription.read(sub_file)
    impostor = trustme.CA().issue_cert("mx.example.org").cert_chain_pems[0].bytes().decode()
    forged = Subscription(sub.gateway, impostor, sub.secret, sub.expires)
    with pytest.raises(PushError, match="certificate"):
        _exchange(forged, {"op": "enrol", "secret": sub.secret, "csr": ""}, None)


def test_malformed_pushes_and_bad_csr_are_refused(gateway: Gateway, tmp_path: Path) -> None:
    sub_file = tmp_path / "sub.json"
    assert _cli("subscribe", "-c", str(gateway.config_file), "--out", str(sub_file))[0] == 0
    sub = Subscription.read(sub_file)
    with pytest.raises(PushError, match="not a certificate request"):
        _exchange(sub, {"op": "enrol", "secret": sub.secret, "csr": "garbage"}, None)
    with pytest.raises(PushError, match="unknown request"):
        _exchange(sub, {"op": "drop-tables"}, None)
    # Without a client certificate nobody may send more than an enrolment needs.
    with pytest.raises(PushError, match="over the limit"):
        _exchange(sub, {"op": "push", "state": {"entries": ["x" * 200_000]}}, None)


def test_gateway_holds_a_push_that_would_empty_its_replica(
    slapd: Slapd, gateway: Gateway, tmp_path: Path
) -> None:
    slapd.load(users_ldif(40))
    sub_file = tmp_path / "sub.json"
    assert _cli("subscribe", "-c", str(gateway.config_file), "--out", str(sub_file))[0] == 0
    inside = _inside(tmp_path / "inside", slapd)
    assert _cli("push", "-c", str(inside), "--subscription", str(sub_file))[0] == 0
    sub = Subscription.read(sub_file)
    folder = tmp_path / "inside" / "state" / "edgesync-client"
    identity = (folder / "client.pem", folder / "client.key")
    # An inside host whose own replica went empty (a wrong base DN there) pushes nothing.
    with pytest.raises(PushError, match="would remove 40 of 40"):
        push(sub, ReplicaState(), identity)
    assert len(read_replica(gateway.replica).entries) == 40
    assert push(sub, ReplicaState(), identity, force=True)["removed"] == 40
    assert read_replica(gateway.replica).entries == {}


def test_enrolled_hosts_are_listed_and_a_revoked_one_is_refused(
    slapd: Slapd, gateway: Gateway, tmp_path: Path
) -> None:
    conn = slapd.admin()
    add_user(conn, "alice", "alice@example.org")
    gw = str(gateway.config_file)
    code, out = _cli("subscriptions", "-c", gw, "--json")
    assert code == 0 and json.loads(out) == []
    sub_file = tmp_path / "sub.json"
    assert _cli("subscribe", "-c", gw, "--out", str(sub_file))[0] == 0
    inside = _inside(tmp_path / "inside", slapd)
    assert _cli("push", "-c", str(inside), "--subscription", str(sub_file))[0] == 0
    client_pem = tmp_path / "inside" / "state" / "edgesync-client" / "client.pem"
    cert = x509.load_pem_x509_certificate(client_pem.read_bytes())
    serial = format(cert.serial_number, "X")

    code, out = _cli("subscriptions", "-c", gw, "--json")
    (host,) = json.loads(out)
    assert host["serial"] == serial and host["subject"] == f"CN={_own_name()}"
    assert host["enrolled"] and host["peer"] == "127.0.0.1"
    assert host["last_push"] and host["last_peer"] == "127.0.0.1" and host["revoked"] is None
    code, out = _cli("subscriptions", "-c", gw)
    assert code == 0 and serial in out and "active" in out

    # Revoked while the listener runs: the very next push over mutual TLS is refused.
    code, out = _cli("revoke", "-c", gw, serial.lower())
    assert code == 0 and "revoked" in out
    add_user(conn, "bob", "bob@example.org")
    code, out = _cli("push", "-c", str(inside), "--subscription", str(sub_file))
    assert code == 1 and "revoked" in out
    assert "bob@example.org" not in read_replica(gateway.replica).by_address
    (host,) = json.loads(_cli("subscriptions", "-c", gw, "--json")[1])
    assert host["revoked"] and host["last_push"]
    code, out = _cli("subscriptions", "-c", gw)
    assert "revoked" in out
    code, out = _cli("revoke", "-c", gw, serial)
    assert code == 0 and "already revoked" in out

    # A new subscription enrols the host again with a new certificate; the old one stays refused.
    assert _cli("subscribe", "-c", gw, "--out", str(sub_file))[0] == 0
    client_pem.unlink()
    assert _cli("push", "-c", str(inside), "--subscription", str(sub_file))[0] == 0
    assert "bob@example.org" in read_replica(gateway.replica).by_address
    hosts = json.loads(_cli("subscriptions", "-c", gw, "--json")[1])
    assert [bool(h["revoked"]) for h in hosts] == [True, False]


def test_revoke_bad_serials_and_the_earlier_clients_file(gateway: Gateway) -> None:
    gw = str(gateway.config_file)
    code, out = _cli("revoke", "-c", gw, "not-hex")
    assert code == 2 and "hex" in out
    code, out = _cli("revoke", "-c", gw, "ABCDEF")
    assert code == 2 and "no enrolled host" in out
    # clients.json of the earlier format: serial -> enrolment time.
    folder = gateway.root / "state" / "edgesync"
    (folder / "clients.json").write_text(json.dumps({str(0xABCDEF): 1_700_000_000.0}))
    (host,) = json.loads(_cli("subscriptions", "-c", gw, "--json")[1])
    assert host["serial"] == "ABCDEF" and host["enrolled"].startswith("2023-11-14")
    assert _cli("revoke", "-c", gw, "ab:cd:ef")[0] == 0
    assert not gateway.listener.enrolment.enrolled(0xABCDEF)
