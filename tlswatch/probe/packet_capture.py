"""Record the probe's own packets with tcpdump (``--pcap``), as evidence for later analysis.

The capture is what ``tlswatch analyse`` reads to tell an injected RST (a TTL or IP ID unlike
the server's other packets) from the server's own. With ``watch_resets`` the same judgement
is made live: tcpdump writes to a pipe, a thread copies every byte to the file and runs the
capture layer's flow reader over the stream, and :meth:`PacketCapture.reset_evidence` hands
a measurement that ended in a reset the TTL/IP ID evidence of the server-side RST it drew.
tcpdump needs capture privileges; without them, or without tcpdump, :class:`PacketCapture`
raises :class:`CaptureUnavailable` with a one-line reason.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import IO

from tlswatch.model import Flow, RstInfo

__all__ = ["CaptureUnavailable", "PacketCapture"]

#: Flows whose server-side resets are remembered (oldest forgotten first): bounds memory on
#: long campaigns; a measurement asks within a second of its reset.
MAX_WATCHED_FLOWS = 65536


class CaptureUnavailable(RuntimeError):
    """tcpdump is missing or may not capture here; ``str()`` says why in one line."""


class PacketCapture:
    """tcpdump writing ``path`` until :meth:`stop`; ``bpf`` selects the packets."""

    def __init__(self, path: Path, bpf: str, *, interface: str = "any",
                 start_timeout: float = 5.0, watch_resets: bool = False) -> None:
        self.path = path
        tool = shutil.which("tcpdump")
        if tool is None:
            raise CaptureUnavailable("tcpdump is not installed (apt-get install tcpdump)")
        self._resets: OrderedDict[tuple[str, int, str, int], RstInfo] = OrderedDict()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # -U and --immediate-mode: each packet reaches the file as it comes (not when a
        # kernel ring block fills), so a stopped or killed run loses nothing; a 16 MiB
        # buffer (-B) keeps a busy machine from dropping packets before tcpdump reads them.
        self.proc = subprocess.Popen(
            [tool, "-i", interface, "-U", "--immediate-mode", "-B", "16384", "-s", "0", "-w",
             "-" if watch_resets else str(path), bpf],
            stdout=subprocess.PIPE if watch_resets else subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + start_timeout
        seen = b""
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            seen += line
            if not line or b"listening on" in line:
                break
        if self.proc.poll() is not None or b"listening on" not in seen:
            self.stop()
            reason = seen.decode("utf-8", "replace").strip().splitlines()
            raise CaptureUnavailable("tcpdump could not start: "
                                     + (reason[-1] if reason else "no output"))
        if watch_resets:
            assert self.proc.stdout is not None
            out = path.open("wb")
            self._thread = threading.Thread(target=self._watch, args=(self.proc.stdout, out),
                                            name="tlswatch-rst-watch", daemon=True)
            self._thread.start()

    # -- live reset evidence ---------------------------------------------------------------

    def _watch(self, pipe: IO[bytes], out: IO[bytes]) -> None:
        from tlswatch.capture.events import FlowEnd, Rst, Side
        from tlswatch.capture.flows import read_flows
        from tlswatch.capture.rst_evidence import rst_info

        first: dict[tuple[str, int, str, int], Rst] = {}  # each flow's first server RST
        counts: dict[tuple[str, int, str, int], int] = {}
        try:
            with read_flows(_Tee(pipe, out)) as reader:  # type: ignore[arg-type]
                for ev in reader:
                    if isinstance(ev, Rst) and ev.side is Side.SERVER:
                        k = ev.key
                        key = (k.client_ip, k.client_port, k.server_ip, k.server_port)
                        first.setdefault(key, ev)
                        counts[key] = counts.get(key, 0) + 1
                        self._remember(key, rst_info(first[key], counts[key], 0))
                    elif isinstance(ev, FlowEnd):
                        k = ev.key
                        key = (k.client_ip, k.client_port, k.server_ip, k.server_port)
                        first.pop(key, None)
                        counts.pop(key, None)
        except Exception:  # evidence is best effort; the file copy must go on
            _drain(pipe, out)
        finally:
            out.close()

    def _remember(self, key: tuple[str, int, str, int], info: RstInfo) -> None:
        with self._lock:
            self._resets[key] = info
            self._resets.move_to_end(key)
            while len(self._resets) > MAX_WATCHED_FLOWS:
                self._resets.popitem(last=False)

    async def reset_evidence(self, flow: Flow, wait: float = 0.3) -> RstInfo | None:
        """The server-side RST seen on ``flow`` (ours as the client), waiting up to ``wait``
        seconds for tcpdump to deliver it; None without ``watch_resets`` or when none came."""
        if self._thread is None:
            return None
        key = (flow.client_ip, flow.client_port, flow.server_ip, flow.server_port)
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                info = self._resets.get(key)
            if info is not None or time.monotonic() >= deadline:
                return info
            await asyncio.sleep(0.01)

    def stop(self) -> None:
        """Stop tcpdump after the last packets reached the file."""
        if self.proc.poll() is None:
            # tcpdump drops what it has not read yet when interrupted: wait until the file
            # has stopped growing (bounded), which on a loaded machine can take a moment.
            last, quiet_since = -1, time.monotonic()
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                size = self.path.stat().st_size if self.path.exists() else 0
                if size != last:
                    last, quiet_since = size, time.monotonic()
                elif time.monotonic() - quiet_since >= 0.3:
                    break
                time.sleep(0.05)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._thread is not None:
            self._thread.join(5)


class _Tee:
    """tcpdump's pcap stream for the flow reader, every byte also appended to the file.

    The capture reader wants ``read(n)`` to return ``n`` bytes except at the end, and peeks
    at the magic number (``seek(0)`` after a first read); a pipe returns what is there. So
    short reads are completed here, except the reader's big read-aheads, which take what has
    arrived (at least :data:`_MIN_READ` bytes, less than any packet record), so each packet
    is handed on as soon as it is complete."""

    def __init__(self, pipe: IO[bytes], out: IO[bytes]) -> None:
        from tlswatch.capture._source import CHUNK_SIZE

        self._chunk = CHUNK_SIZE  # the reader's read-ahead size
        self._fd = pipe.fileno()
        self._out = out
        self._head = b""  # the stream's first bytes, kept while a rewind is still possible
        self._pos = 0  # read position while inside _head
        self._served = 0  # bytes handed out since the start (or the rewind)
        self.name = "tcpdump"

    def seek(self, offset: int, whence: int = 0, /) -> int:
        if offset != 0 or whence != 0 or self._served > len(self._head):
            raise OSError("a live capture can only be rewound to its start")
        self._pos = self._served = 0
        return 0

    def read(self, size: int, /) -> bytes:
        want = min(size, _MIN_READ) if size >= self._chunk else size
        part = self._head[self._pos:self._pos + size]
        self._pos += len(part)
        parts, got = [part], len(part)
        while got < want:
            part = os.read(self._fd, size - got)
            if not part:
                break
            self._out.write(part)
            self._out.flush()
            if len(self._head) < _MIN_READ:  # only the magic number is ever peeked at
                self._head += part
                self._pos = len(self._head)
            parts.append(part)
            got += len(part)
        self._served += got
        return b"".join(parts)


_MIN_READ = 64


def _drain(pipe: IO[bytes], out: IO[bytes]) -> None:
    """Keep copying the stream to the file (the evidence reader gave up)."""
    fd = pipe.fileno()
    while part := os.read(fd, 65536):
        out.write(part)
        out.flush()
