"""A pytest plugin: CI fails on a test that did not run; every skip, xfail and xpass
is a failure.

A skipped test proves nothing and reads as green, so a missing binary or server must
fail (the harnesses call ``pytest.fail``), and so must a forgotten ``skip``/``xfail``
mark. Both test trees load it (``-p spancost_no_skips`` in /pytest.ini and in
python_processor/pyproject.toml, which put this directory on ``pythonpath``).
"""

from __future__ import annotations

from collections.abc import Generator

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_if_not_run(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _fail_if_not_run(report)
    return report


def _fail_if_not_run(report: pytest.TestReport | pytest.CollectReport) -> None:
    xfail_reason = getattr(report, "wasxfail", None)
    if report.skipped and xfail_reason is not None:
        what, why = "xfailed", xfail_reason
    elif report.skipped:
        longrepr = report.longrepr
        why = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        why = why.removeprefix("Skipped: ")
        what = "skipped"
    elif xfail_reason is not None:
        what, why = "xpassed", xfail_reason
    else:
        return
    report.outcome = "failed"
    report.longrepr = (
        f"{report.nodeid} {what} ({why}), and CI counts a test that did not run as a "
        "failure: make it run (a missing tool or server is a pytest.fail) or delete it"
    )
    if xfail_reason is not None:
        del report.wasxfail  # else pytest reports it as xfailed/xpassed, not failed
