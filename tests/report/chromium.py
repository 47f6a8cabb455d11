"""Drive headless Chromium over the DevTools protocol on a pipe (no port, no websocket).

``--remote-debugging-pipe`` makes Chromium read protocol messages from fd 3 and write them
to fd 4, each a JSON object followed by a NUL byte. That needs nothing beyond the standard
library, opens no socket, and lets a test record every request a page makes
(``Network.requestWillBeSent``), evaluate expressions in it and take a screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import time
from pathlib import Path
from typing import Any

# The flags that keep Chromium from reaching out on its own (updates, sync, safe browsing…).
QUIET_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
)


class ChromiumError(RuntimeError):
    pass


class Chromium:
    """One headless browser; use as a context manager."""

    def __init__(self, exe: str, profile: Path, *, width: int = 1280, height: int = 2000,
                 timeout: float = 20.0) -> None:
        self.timeout = timeout
        cmd_r, cmd_w = os.pipe()  # we write commands; Chromium reads them on fd 3
        ev_r, ev_w = os.pipe()  # Chromium writes answers and events on fd 4
        argv = [exe, *QUIET_FLAGS, f"--user-data-dir={profile}",
                f"--window-size={width},{height}", "--remote-debugging-pipe", "about:blank"]
        # posix_spawn places the pipe ends on fds 3 and 4 exactly (the others stay closed:
        # Python opens its descriptors close-on-exec).
        self.pid = os.posix_spawn(exe, argv, dict(os.environ), file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, cmd_r, 3),
            (os.POSIX_SPAWN_DUP2, ev_w, 4),
        ])
        os.close(cmd_r)
        os.close(ev_w)
        self._w = cmd_w
        self._r = ev_r
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send("Browser.close", browser=True, wait=False)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGKILL)  # our own child, by its pid
            os.waitpid(self.pid, 0)
        for fd in (self._w, self._r):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- protocol --------------------------------------------------------------------------

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChromiumError("no answer from chromium in time")
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise ChromiumError("chromium closed the pipe")
                self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        msg: dict[str, Any] = json.loads(raw)
        return msg

    def send(self, method: str, *, browser: bool = False, wait: bool = True,
             **params: Any) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if not browser and self.session:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        if not wait:
            return {}
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._next:
                if "error" in m:
                    raise ChromiumError(f"{method}: {m['error']}")
                result: dict[str, Any] = m.get("result", {})
                return result
            self.events.append(m)

    def wait_event(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            m = self._read_message(deadline)
            if m.get("method") == method:
                return m
            self.events.append(m)

    # -- what the tests use ----------------------------------------------------------------

    def open(self, url: str) -> list[str]:
        """Load ``url`` in a fresh tab; return the URL of every request the page made."""
        target = self.send("Target.createTarget", browser=True, url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", browser=True, targetId=target,
                                 flatten=True)["sessionId"]
        self.events.clear()
        self.send("Network.enable")
        self.send("Page.enable")
        self.send("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")
        # Anything a page starts after load (a timer, an onerror handler) gets a moment.
        self.evaluate("new Promise(r => setTimeout(r, 200))", promise=True)
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def evaluate(self, expression: str, *, promise: bool = False) -> Any:
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=promise)
        if "exceptionDetails" in r:
            raise ChromiumError(f"{expression!r}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        return path
