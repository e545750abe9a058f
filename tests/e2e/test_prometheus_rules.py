"""The alert rules (configs/prometheus/): valid for Prometheus' own checker, their unit
tests pass in Prometheus' own test runner, the Operator manifest carries the same rules,
and every spancost metric they read is one the guard or the collector exposes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from spancost.guard.metrics import GuardMetrics
from spancost.guard.policy import Assessment, Level
from spancost.guard.run import DomainReport, RunReport

from tests.e2e.harness import ROOT

RULES = ROOT / "configs" / "prometheus"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        raise AssertionError("promtool not found: scripts/deps.sh installs Debian's prometheus")
    return found


def run(*args: str, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - a pinned tool
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_rules_are_valid() -> None:
    result = run("check", "rules", "spancost-rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_the_rules_unit_tests_pass() -> None:
    result = run("test", "rules", "spancost-rules.test.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_can_fail(tmp_path: Path) -> None:
    """A rule with the wrong threshold fails its test."""
    rules = (RULES / "spancost-rules.yaml").read_text()
    (tmp_path / "spancost-rules.yaml").write_text(
        rules.replace(
            "spancost_budget_unpriced_ratio > 0.2", "spancost_budget_unpriced_ratio > 0.6"
        )
    )
    shutil.copy(RULES / "spancost-rules.test.yaml", tmp_path)
    result = run("test", "rules", "spancost-rules.test.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "SpancostUnpricedShareHigh" in result.stdout + result.stderr


def test_the_operator_manifest_carries_the_same_rules() -> None:
    result = subprocess.run(  # noqa: S603 - our own script
        [sys.executable, str(ROOT / "scripts" / "prometheusrule.py"), "--check"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load((RULES / "prometheusrule.yaml").read_text().split("\n", 4)[-1])
    assert (
        manifest["spec"]["groups"]
        == yaml.safe_load((RULES / "spancost-rules.yaml").read_text())["groups"]
    )


def test_every_spancost_metric_the_rules_read_is_exposed() -> None:
    report = RunReport(datetime(2025, 1, 31, tzinfo=UTC), spend_basis="allocated")
    report.domains.append(
        DomainReport(Assessment("checkout", 1.0, 2.0, "USD", 0.5, Level.OK, False), False)
    )
    report.allocation = {"idle": 1.0}
    metrics = GuardMetrics()
    metrics.record(report)
    exposed = {sample.name for family in metrics.collect() for sample in family.samples}
    rules = (RULES / "spancost-rules.yaml").read_text()
    read = set(re.findall(r"\b(spancost_[a-z_]+)", rules))
    assert read, "no spancost metric in the rules?"
    assert read <= exposed, sorted(read - exposed)
    collector = set(re.findall(r"\b(otelcol_[a-z_]+)", rules))
    documented = {
        name
        for path in (ROOT / "collector").rglob("documentation.md")
        for name in re.findall(r"^### (otelcol_[a-z_]+)", path.read_text(), flags=re.MULTILINE)
    }
    # As Prometheus stores them: the collector serves its telemetry in the text format
    # under these names, no _total added (the dashboard's test reads them from a real
    # scrape: tests/e2e/test_grafana_dashboard.py).
    assert collector, "no collector metric in the rules?"
    assert collector <= documented, sorted(collector - documented)


@pytest.mark.parametrize("name", ["spancost-rules.yaml", "prometheusrule.yaml"])
def test_the_rule_files_are_documented(name: str) -> None:
    assert name in (ROOT / "configs" / "README.md").read_text()
