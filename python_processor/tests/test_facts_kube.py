"""`KubeFacts`' list-then-watch loop against a scripted API (the official client's `Watch`
reading fake HTTP responses): events applied in order, bookmarks resumed from, ``410
Gone`` answered by listing again, an unreachable API keeping the last facts.

tests/kube/test_node_facts.py runs the same class against a real kube-apiserver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import urllib3
from kubernetes import client

from spancost.facts.kube import KubeFacts

NODE = "n1"


def node(capacity: str, version: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": NODE,
            "uid": "u",
            "resourceVersion": version,
            "labels": {
                "node.kubernetes.io/instance-type": "m5.large",
                "topology.kubernetes.io/region": "us-east-1",
                "eks.amazonaws.com/capacityType": capacity,
            },
        }
    }


def pod(uid: str, version: str, cpu: str = "500m") -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "name": f"p-{uid}", "namespace": "ns", "resourceVersion": version},
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}],
        },
        "status": {"phase": "Running"},
    }


@dataclass
class Response:
    """Enough of a urllib3 response for the client's list (``data``) and watch (``stream``)."""

    body: bytes
    status: int = 200
    released: bool = False

    @property
    def data(self) -> bytes:
        return self.body

    def stream(self, amt: Any = None, decode_content: Any = None) -> Iterator[bytes]:
        yield from self.body.splitlines(keepends=True)

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        self.released = True


@dataclass
class ScriptedApi:
    """Answers list and watch calls from queues; an exception in a queue is raised."""

    lists: list[Any]
    watches: list[Any]
    calls: list[dict[str, Any]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __call__(self, **kwargs: Any) -> Response:
        self.calls.append(kwargs)
        queue = self.watches if kwargs.get("watch") else self.lists
        if not queue:
            self.done.set()
            time.sleep(0.05)  # the loop idles on empty watches until closed
            return Response(b"")
        answer = queue.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, Response)
        return answer


def listed(items: list[dict[str, Any]], version: str) -> Response:
    return Response(json.dumps({"metadata": {"resourceVersion": version}, "items": items}).encode())


def watched(*events: tuple[str, dict[str, Any]]) -> Response:
    return Response(
        b"".join(json.dumps({"type": t, "object": o}).encode() + b"\n" for t, o in events)
    )


def facts_with(nodes: ScriptedApi, pods: ScriptedApi, monkeypatch: pytest.MonkeyPatch) -> KubeFacts:
    monkeypatch.setattr("spancost.facts.kube.MIN_BACKOFF_S", 0.01)
    facts = KubeFacts(client.ApiClient(), NODE, watch_timeout_s=5)
    node_watcher, pod_watcher = facts._watchers
    node_watcher._list = nodes
    pod_watcher._list = pods
    return facts


def run_until_done(facts: KubeFacts, *apis: ScriptedApi) -> None:
    facts.start()
    try:
        for api in apis:
            assert api.done.wait(10), "the watcher did not get through its script"
    finally:
        facts.close()


def test_list_then_watch_applies_events_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = ScriptedApi(
        lists=[listed([node("ON_DEMAND", "10")], "10")],
        watches=[
            watched(
                ("MODIFIED", node("SPOT", "12")),
                ("BOOKMARK", {"metadata": {"resourceVersion": "15"}}),
            )
        ],
    )
    pods = ScriptedApi(
        lists=[listed([pod("a", "10"), pod("b", "10")], "10")],
        watches=[watched(("MODIFIED", pod("a", "11", cpu="2")), ("DELETED", pod("b", "13")))],
    )
    facts = facts_with(nodes, pods, monkeypatch)
    run_until_done(facts, nodes, pods)
    current = facts.node()
    assert current is not None and current.capacity == "spot"
    # The node listed, then relabelled; the pods listed, then one asking for more CPU
    # (what prices a span changed each time; the deletion changes no request).
    assert facts.version == 4
    assert facts.pods()["a"].requests.cpu == 2.0
    assert facts.pods()["b"].end is not None  # deleted, kept with its end time
    assert facts.stale_since is None
    # Field selectors scope both to the node; the watch resumes from the list's version,
    # then from the bookmark's; bookmarks are asked for.
    first_watch, second_watch = [c for c in nodes.calls if c.get("watch")][:2]
    assert first_watch["field_selector"] == f"metadata.name={NODE}"
    assert first_watch["resource_version"] == "10"
    assert first_watch["allow_watch_bookmarks"] is True
    assert second_watch["resource_version"] == "15"
    assert pods.calls[0]["field_selector"] == f"spec.nodeName={NODE}"


def test_gone_lists_again(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = watched(("ERROR", {"kind": "Status", "code": 410, "message": "too old"}))
    nodes = ScriptedApi(
        lists=[listed([node("ON_DEMAND", "10")], "10"), listed([node("SPOT", "90")], "90")],
        watches=[gone],
    )
    pods = ScriptedApi(lists=[listed([pod("a", "10")], "10"), listed([], "90")], watches=[gone])
    facts = facts_with(nodes, pods, monkeypatch)
    run_until_done(facts, nodes, pods)
    assert facts.stats["node"].gone == 1 and facts.stats["node"].lists == 2
    assert facts.node().capacity == "spot"  # type: ignore[union-attr]
    # A pod missing from the new list was deleted meanwhile: ended, not forgotten.
    assert facts.pods()["a"].end is not None
    assert facts.stale_since is None  # 410 is not an outage


def test_an_unreachable_api_keeps_the_last_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = urllib3.exceptions.MaxRetryError(None, "/api/v1/nodes", "Connection refused")  # type: ignore[arg-type]
    nodes = ScriptedApi(
        lists=[listed([node("ON_DEMAND", "10")], "10"), refused, refused],
        watches=[refused],
    )
    pods = ScriptedApi(lists=[listed([], "10")], watches=[])
    facts = facts_with(nodes, pods, monkeypatch)
    facts.start()
    try:
        assert nodes.done.wait(10)
        assert facts.node() is not None and facts.node().capacity == "on_demand"  # type: ignore[union-attr]
        assert facts.stale_since is not None
        assert facts.stats["node"].failures == 3
        # Back: the next list confirms the facts again.
        nodes.lists.append(listed([node("ON_DEMAND", "20")], "20"))
        nodes.done.clear()
        assert nodes.done.wait(10)
        assert facts.stale_since is None
        assert facts.version == 1  # nothing that prices changed
    finally:
        facts.close()


def test_the_node_deleted_leaves_no_facts(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = ScriptedApi(
        lists=[listed([node("ON_DEMAND", "10")], "10")],
        watches=[watched(("DELETED", node("ON_DEMAND", "11")))],
    )
    pods = ScriptedApi(lists=[listed([], "10")], watches=[])
    facts = facts_with(nodes, pods, monkeypatch)
    run_until_done(facts, nodes, pods)
    assert facts.node() is None and facts.version == 2


def test_ended_pods_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_000_000.0]
    facts = KubeFacts(client.ApiClient(), NODE, ended_pod_ttl_s=60, clock=lambda: now[0])
    facts._on_pod("DELETED", pod("a", "5"))
    assert "a" in facts.pods()
    now[0] += 61
    facts._on_pod("ADDED", pod("b", "6"))
    assert set(facts.pods()) == {"b"}
    facts.close()


def test_node_name_is_required() -> None:
    with pytest.raises(ValueError, match="node_name"):
        KubeFacts(client.ApiClient(), "")
