"""A console over a data folder of its own, with a quarantine to look at (no gateway running)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from edgeward.config.schema import Config
from edgeward.quarantine.entry import HeldFinding, QuarantineEntry
from edgeward.quarantine.service import open_store
from edgeward.web.app import create_app
from edgeward.web.auth import WebAccounts

ADMIN_PW = "correct horse battery staple"
READER_PW = "read only, please"


def make_config(root: Path, **web: object) -> Config:
    return Config.model_validate(
        {"server": {"data_dir": str(root), "hostname": "mx.example.test"},
         "accepted_domains": ["example.test"], "web": web}
    )  # fmt: skip


def message(subject: str = "hello", from_name: str = "Sender", filename: str = "report.pdf") -> bytes:
    return (
        f"From: {from_name} <s@remote.test>\r\nTo: u@example.test\r\nSubject: {subject}\r\n"
        "Message-ID: <m1@remote.test>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe body <b>bold</b>\r\n"
        f'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="{filename}"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
    ).encode()


def hold(
    config: Config, data: bytes, *, subject: str = "hello", rcpts: tuple[str, ...] = ("u@example.test",)
) -> str:
    entry = QuarantineEntry(
        "", "s@remote.test", rcpts, "content-filter", scl=8, findings=("SPAM_WORDS",), subject=subject,
        client_ip="192.0.2.7", details=(HeldFinding("SPAM_WORDS", "content-filter", "free money", 8.0),),
        message_id="<m1@remote.test>",
    )  # fmt: skip
    return open_store(config).put(entry, data)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def login(client: TestClient, name: str, password: str) -> TestClient:
    form = client.get("/login")
    r = client.post("/login", data={"name": name, "password": password, "csrf": csrf_of(form.text)},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    return client


@pytest.fixture
def config(tmp_path: Path) -> Config:
    cfg = make_config(tmp_path)
    accounts = WebAccounts(cfg.resolve(Path("state")))
    accounts.add("admin", ADMIN_PW, "admin")
    accounts.add("reader", READER_PW, "readonly")
    return cfg


@pytest.fixture
def client(config: Config) -> Iterator[TestClient]:
    with TestClient(create_app(config), base_url="https://testserver") as c:
        yield c
