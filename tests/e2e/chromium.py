"""Headless Chromium driven over the Chrome DevTools Protocol, for the HTML report's test.

Debian's ``chromium`` (scripts/deps.sh installs it) runs headless with
``--remote-debugging-port=0``: it picks a free port and writes it to
``DevToolsActivePort`` in its profile directory, and this module speaks CDP to it over
one websocket (websocket-client), in flat session mode. A `Page` records every event,
so a test can ask afterwards what the console said, what was thrown and what was
requested, not only what it polled for.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websocket

from tests.waiting import wait_for

CHROMIUM = "chromium"
INSTALL_HINT = "install it with scripts/deps.sh (apt-get install chromium)"


class DevToolsError(Exception):
    """Chromium answered a command with an error, or did not answer in time."""


@dataclass
class Page:
    """One tab, attached in flat mode: commands carry its session id."""

    browser: Browser
    session: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.call(method, params, session=self.session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (JSON-serialisable), raised if it throws."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, timeout: float = 30.0) -> None:
        """Navigate to `url` and return once it has loaded (its scripts have run)."""
        loaded_before = len(self.events)
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired", timeout, after=loaded_before)

    def wait_event(self, method: str, timeout: float = 30.0, after: int = 0) -> dict[str, Any]:
        """The first `method` event from the `after`-th on, waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[after:]:
                if event["method"] == method:
                    return event
            if time.monotonic() > deadline:
                raise DevToolsError(f"no {method} within {timeout:g} s")
            self.browser.pump(timeout=max(deadline - time.monotonic(), 0.01))

    def problems(self) -> list[str]:
        """What a person would see in red in the console: console.error and assert
        calls, uncaught exceptions, and the browser's own errors (a script or style
        refused by the Content-Security-Policy, a resource that failed to load)."""
        found = []
        for event in self.events:
            params = event["params"]
            if event["method"] == "Runtime.consoleAPICalled" and params["type"] in (
                "error",
                "assert",
            ):
                found.append(" ".join(str(arg.get("value", arg)) for arg in params["args"]))
            elif event["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description", details["text"]))
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    def requested(self) -> list[str]:
        """Every URL the page asked for."""
        return [
            event["params"]["request"]["url"]
            for event in self.events
            if event["method"] == "Network.requestWillBeSent"
        ]

    def screenshot(self) -> bytes:
        """The viewport as PNG."""
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])


class Browser:
    """A running headless Chromium and one websocket to it."""

    def __init__(self, profile: Path) -> None:
        executable = shutil.which(CHROMIUM)
        if executable is None:
            pytest.fail(f"{CHROMIUM} is not on PATH: {INSTALL_HINT}", pytrace=False)
        arguments = [
            executable,
            "--headless",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-sync",
            "--disable-gpu",
            "--hide-scrollbars",
            "--mute-audio",
            "about:blank",
        ]
        if os.geteuid() == 0:
            # Chromium refuses to start as root with its sandbox (CI and this
            # workplace run tests as root); the page it opens is our own file.
            arguments.insert(2, "--no-sandbox")
        self.log_path = profile / "chromium.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - the system's chromium
                arguments, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        active = profile / "DevToolsActivePort"

        def listening() -> bool:
            if self.process.poll() is not None:
                raise DevToolsError(f"chromium exited {self.process.returncode}: {self.log()}")
            return active.exists() and len(active.read_text().splitlines()) >= 2

        wait_for(listening, 30, "chromium's DevToolsActivePort", interval=0.1)
        port, path = active.read_text().splitlines()[:2]
        # No Origin header: Chromium refuses websockets from origins it was not told of.
        self.socket = websocket.create_connection(
            f"ws://127.0.0.1:{port}{path}", timeout=30, suppress_origin=True
        )
        self.pages: dict[str, Page] = {}
        self._next_id = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        while True:
            reply = self._receive(30.0)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise DevToolsError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result

    def pump(self, timeout: float) -> None:
        """Take in the next message (an event), if one comes within `timeout` s."""
        try:
            self._receive(timeout)
        except websocket.WebSocketTimeoutException:
            return

    def _receive(self, timeout: float) -> dict[str, Any]:
        self.socket.settimeout(timeout)
        message: dict[str, Any] = json.loads(self.socket.recv())
        if "method" in message and message.get("sessionId") in self.pages:
            self.pages[message["sessionId"]].events.append(message)
        return message

    def new_page(self, width: int, height: int) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"])
        self.pages[page.session] = page
        for domain in ("Runtime", "Log", "Page", "Network"):
            page.call(f"{domain}.enable")
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return page

    def close(self) -> None:
        try:
            self.socket.close()
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)  # its own session: our child
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(10)


@contextmanager
def running_browser() -> Iterator[Browser]:
    """A headless Chromium with a fresh profile, stopped afterwards; the test fails (it
    does not skip) when there is no chromium."""
    with tempfile.TemporaryDirectory(prefix="spancost-chromium-") as profile:
        browser = Browser(Path(profile))
        try:
            yield browser
        finally:
            browser.close()


def png_pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows of pixels (RGB or RGBA bytes) of an 8-bit,
    non-interlaced truecolour PNG, as Chromium writes screenshots; enough to tell a
    rendered page from a blank one without an imaging library."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, compressed = 8, b""
    width = height = channels = 0
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        body = png[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, interlace) == (8, 0) and colour in (2, 6), (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            compressed += body
        position += 12 + length
    raw = zlib.decompress(compressed)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if method == 2:  # Up, the commonest on a page: one pass
            line = bytearray((value + up) & 0xFF for value, up in zip(line, previous, strict=True))
        for x in range(stride if method in (1, 3, 4) else 0):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            if method == 1:
                line[x] = (line[x] + left) & 0xFF
            elif method == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif method == 4:
                corner = previous[x - channels] if x >= channels else 0
                estimate = left + up - corner
                nearest = min(
                    (abs(estimate - left), 0, left),
                    (abs(estimate - up), 1, up),
                    (abs(estimate - corner), 2, corner),
                )[2]
                line[x] = (line[x] + nearest) & 0xFF
        previous = bytes(line)
        rows.append(previous)
    return width, height, rows
