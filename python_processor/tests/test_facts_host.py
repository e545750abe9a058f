"""`HostWatcher`: asked once at start, again in the background; the last answer kept.

tests/e2e/test_host_facts.py asks AWS's instance metadata mock and an ECS task
metadata server through the real collector."""

from __future__ import annotations

import threading
import time

import pytest

from spancost.facts.host import HostFacts, HostFactsError, HostWatcher, fetch_ec2, fetch_ecs

C6G = HostFacts(source="ec2_metadata", platform="aws_ec2", instance_type="c6g.large")


class Script:
    def __init__(self, *answers: HostFacts | HostFactsError) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.exhausted = threading.Event()

    def __call__(self) -> HostFacts:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if len(self.answers) == 1:
            self.exhausted.set()
        if isinstance(answer, HostFactsError):
            raise answer
        return answer


def test_a_failed_first_ask_is_retried_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("spancost.facts.host._RETRY_S", 0.01)
    script = Script(HostFactsError("not yet"), HostFactsError("not yet"), C6G)
    watcher = HostWatcher("ec2_metadata", script, refresh_s=3600).start()
    try:
        assert script.exhausted.wait(5)
        deadline = time.monotonic() + 5
        while watcher.facts is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watcher.facts == C6G
        assert (watcher.failures, watcher.version) == (2, 1)
    finally:
        watcher.close()


def test_a_later_failure_keeps_the_last_answer(caplog: pytest.LogCaptureFixture) -> None:
    script = Script(C6G, HostFactsError("timed out"))
    watcher = HostWatcher("ec2_metadata", script, refresh_s=3600)
    assert watcher.fetch_now()
    assert not watcher.fetch_now()
    assert watcher.facts == C6G and watcher.version == 1
    assert "timed out; keeping the last answer" in caplog.text
    assert watcher.fetch_now() is False  # the script repeats its last answer


def test_nothing_listening_is_a_clear_error() -> None:
    with pytest.raises(HostFactsError, match=r"127\.0\.0\.1:9"):
        fetch_ec2("http://127.0.0.1:9", timeout_s=0.2, retries=0)
    with pytest.raises(HostFactsError, match=r"/v4/x/task"):
        fetch_ecs("http://127.0.0.1:9/v4/x", timeout_s=0.2, retries=0)
