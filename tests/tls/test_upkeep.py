from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from edgeward.tls.store import CertificateStore
from edgeward.tls.upkeep import check_certificates


class Clock:
    def __init__(self, when: datetime) -> None:
        self.when = when

    def now(self) -> float:
        return self.when.timestamp()


def test_self_signed_certificate_is_renewed_before_expiry_and_metric_written(tmp_path: Path) -> None:
    clock = Clock(datetime.now(UTC))
    store = CertificateStore(tmp_path / "tls", clock=clock)
    cert, _ = store.ensure_default("mx.example.test", days=365)
    old = store.list()[0].thumbprint
    metrics = tmp_path / "metrics.prom"
    assert check_certificates(store, metrics).renewed == ()
    assert f'thumbprint="{old[:16]}"' in metrics.read_text()
    clock.when += timedelta(days=340)  # 25 days left: inside the 30-day window
    report = check_certificates(CertificateStore(tmp_path / "tls", clock=clock), metrics)
    [(before, after)] = report.renewed
    assert before == old and after != old
    bound = [
        info.thumbprint for info in CertificateStore(tmp_path / "tls", clock=clock).list() if info.bindings
    ]
    assert bound == [after]  # the smtp binding moved to the new certificate
    assert store.binding_for("smtp")[0] != cert
    assert f'thumbprint="{after[:16]}"' in metrics.read_text()


def test_cert_commands_find_the_store_from_the_configuration(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from edgeward.cli.cert import cert_app

    (tmp_path / "edgeward.toml").write_text("[server]\nhostname = 'mx.example.test'\ndata_dir = '.'\n")
    CertificateStore(tmp_path / "tls").ensure_default("mx.example.test")
    env = {"EDGEWARD_TLS_STORE": ""}
    result = CliRunner().invoke(
        cert_app, ["--config", str(tmp_path / "edgeward.toml"), "list", "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    [cert] = json.loads(result.stdout)["certificates"]
    assert "mx.example.test" in cert["sans"]
