"""Record the probe's own packets with tcpdump (``--pcap``), as evidence for later analysis.

The capture is what ``tlswatch analyse`` reads to tell an injected RST (a TTL or IP ID unlike
the server's other packets) from the server's own. tcpdump needs capture privileges; without
them, or without tcpdump, :class:`PacketCapture` raises :class:`CaptureUnavailable` with a
one-line reason.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["CaptureUnavailable", "PacketCapture"]


class CaptureUnavailable(RuntimeError):
    """tcpdump is missing or may not capture here; ``str()`` says why in one line."""


class PacketCapture:
    """tcpdump writing ``path`` until :meth:`stop`; ``bpf`` selects the packets."""

    def __init__(self, path: Path, bpf: str, *, interface: str = "any",
                 start_timeout: float = 5.0) -> None:
        self.path = path
        tool = shutil.which("tcpdump")
        if tool is None:
            raise CaptureUnavailable("tcpdump is not installed (apt-get install tcpdump)")
        # -U and --immediate-mode: each packet reaches the file as it comes (not when a
        # kernel ring block fills), so a stopped or killed run loses nothing; a 16 MiB
        # buffer (-B) keeps a busy machine from dropping packets before tcpdump reads them.
        self.proc = subprocess.Popen(
            [tool, "-i", interface, "-U", "--immediate-mode", "-B", "16384", "-s", "0", "-w",
             str(path), bpf],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
