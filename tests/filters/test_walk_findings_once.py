"""The walk's structural findings count once in a message's total, with both content agents on.

The anti-virus agent and the attachment filter read the same walk; its findings (``MIME_*``,
``ARCHIVE_*``, ``ATTACH_NAME_HOSTILE``, ``ATTACH_TYPE_MISMATCH``) belong to the attachment
filter alone. The Office engine reports ``ARCHIVE_ENCRYPTED`` only for what the walk cannot see
(the legacy .doc encryption), so neither case is counted twice. Run over the policy layer as
``runtime`` builds it, with the real Office engine (oletools in its worker processes).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from edgeward.config.load import parse_config
from edgeward.config.schema import AGENT_NAMES, ReceiveConnectorConfig
from edgeward.config.scores import SCORE_TABLE
from edgeward.filters.base import SessionInfo, Stage, StageContext
from edgeward.filters.message import MessageView
from edgeward.filters.verdict import Ledger, Verdict
from edgeward.headers import parse_headers
from edgeward.queue.spool import Spool
from edgeward.runtime_policy import build_agents, build_policy, build_scan_policy
from edgeward.scanning.office import OfficeEngine
from edgeward.scanning.walk import walk_message
from edgeward.types import Address, Peer
from tests.scanning.builders import message, zip_bytes
from tests.scanning.office_samples import TARBALL, sample

pytestmark = pytest.mark.skipif(not TARBALL.exists(), reason="the oletools corpus is not installed")

KEPT = ("antivirus", "attachment-filter", "relay-control")
INFO = SessionInfo("s1", Peer("192.0.2.1", 1234), ReceiveConnectorConfig(name="internet"))


async def verdict_of(data: bytes, root: Path) -> Verdict:
    config = parse_config({
        "server": {"data_dir": str(root)}, "accepted_domains": ["example.test"],
        "agents": {"disabled": [n for n in AGENT_NAMES if n not in KEPT]},
        "antivirus": {"enabled": True, "clamd": {"enabled": False}, "office": {"workers": 1, "timeout": 60}},
    }, base=root)  # fmt: skip
    scan = build_scan_policy(config)
    agents = build_agents(config, Spool(root / "queue", fsync=False), scan_policy=scan)
    assert [a.name for a in agents] == ["relay-control", "antivirus", "attachment-filter"]
    policy = build_policy(config, agents)
    headers = parse_headers(data)
    ctx = StageContext(
        Stage.EOD, INFO, mail_from=Address("a", "remote.test"), recipients=(Address("u", "example.test"),),
        data=data, headers=headers, msg_id="01TEST", message=MessageView(data, headers, policy.walk_limits),
    )  # fmt: skip
    try:
        return await policy.end_of_data(ctx, Ledger())
    finally:
        for engine in scan.engines:
            if isinstance(engine.scanner, OfficeEngine):
                await engine.scanner.close()


async def test_walk_findings_are_the_attachment_filters_and_count_once(tmp_path: Path) -> None:
    broken_zip = zip_bytes({"notes.txt": b"plain words " * 200})[:-40]
    data = message(
        ("budget.docx", sample("basic/encrypted.docx"), "application/octet-stream"),
        ("notes.zip", broken_zip, "application/zip"),
    )
    walk = walk_message(data)
    walked = Counter(name for name, _ in walk.findings)
    assert {"ARCHIVE_ENCRYPTED", "ARCHIVE_CORRUPT"} <= set(walked)
    verdict = await verdict_of(data, tmp_path)
    counted = Counter(f.name for f in verdict.findings if f.name in walked)
    assert counted == walked
    assert {f.agent for f in verdict.findings if f.name in walked} == {"attachment-filter"}
    scanned = [f for f in verdict.findings if f.agent == "antivirus"]
    assert not {f.name for f in scanned} & set(walked)
    expected = sum(SCORE_TABLE[n].weight * k for n, k in walked.items()) + sum(f.score for f in scanned)
    assert verdict.total == pytest.approx(expected)


async def test_legacy_office_encryption_is_counted_once_from_the_engine(tmp_path: Path) -> None:
    data = message(("minutes.doc", sample("encrypted/encrypted.doc"), "application/msword"))
    assert "ARCHIVE_ENCRYPTED" not in {name for name, _ in walk_message(data).findings}
    verdict = await verdict_of(data, tmp_path)
    [encrypted] = [f for f in verdict.findings if f.name == "ARCHIVE_ENCRYPTED"]
    assert encrypted.agent == "antivirus"
    assert verdict.total == pytest.approx(SCORE_TABLE["ARCHIVE_ENCRYPTED"].weight)
