from __future__ import annotations

from edgeward.config.schema import ReceiveConnectorConfig
from edgeward.server.listener import ConnectorTable


def rc(
    name: str, ranges: tuple[str, ...], bindings: tuple[str, ...] = ("0.0.0.0:25",)
) -> ReceiveConnectorConfig:
    return ReceiveConnectorConfig(name=name, bindings=bindings, remote_ranges=ranges)


def test_most_specific_remote_range_wins() -> None:
    table = ConnectorTable(
        [rc("internet", ("0.0.0.0/0",)), rc("lan", ("10.0.0.0/8",)), rc("app", ("10.1.2.3/32",))]
    )
    assert table.select("192.0.2.1", 25, "198.51.100.7").name == "internet"  # type: ignore[union-attr]
    assert table.select("192.0.2.1", 25, "10.9.9.9").name == "lan"  # type: ignore[union-attr]
    assert table.select("192.0.2.1", 25, "10.1.2.3").name == "app"  # type: ignore[union-attr]


def test_binding_must_match_port_and_address() -> None:
    table = ConnectorTable([rc("a", ("0.0.0.0/0",), ("127.0.0.1:2525",))])
    assert table.select("127.0.0.1", 25, "127.0.0.1") is None
    assert table.select("127.0.0.2", 2525, "127.0.0.1") is None
    assert table.select("127.0.0.1", 2525, "::ffff:127.0.0.1") is not None


def test_no_connector_for_unlisted_client() -> None:
    table = ConnectorTable([rc("lan", ("10.0.0.0/8",))])
    assert table.select("192.0.2.1", 25, "198.51.100.7") is None
