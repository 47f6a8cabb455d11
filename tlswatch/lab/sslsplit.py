"""sslsplit as a second interceptor that no one here wrote.

On loopback there is no NAT table to look up the original destination, so each listener
gets a static upstream: ``ssl <listen ip> <port> <origin ip> <port>`` (never ``sni`` mode,
which would resolve names through the system resolver, i.e. off this machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SslsplitProcess", "SslsplitStatus", "find_sslsplit"]


def find_sslsplit() -> str | None:
    return shutil.which("sslsplit")


@dataclass
class SslsplitStatus:
    status: str  # running | missing | disabled | failed | stopped
    detail: str = ""
    pid: int | None = None
    routes: dict[str, str] = field(default_factory=dict)  # listen ip -> origin ip


class SslsplitProcess:
    def __init__(
        self,
        binary: str,
        ca_cert: Path,
        ca_key: Path,
        routes: dict[str, str],
        port: int,
        logdir: Path,
    ) -> None:
        self.binary = binary
        self.ca_cert, self.ca_key = ca_cert, ca_key
        self.routes = routes
        self.port = port
        self.logdir = logdir
        self.proc: asyncio.subprocess.Process | None = None

    def argv(self) -> list[str]:
        args = [
            self.binary,
            "-k",
            str(self.ca_key),
            "-c",
            str(self.ca_cert),
            "-l",
            str(self.logdir / "sslsplit-connect.log"),
        ]
        for listen, origin in self.routes.items():
            args += ["ssl", listen, str(self.port), origin, str(self.port)]
        return args

    async def start(self, timeout: float = 5.0) -> None:
        """Start and wait until every listener accepts; raises RuntimeError with its stderr."""
        stderr = (self.logdir / "sslsplit-stderr.log").open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # Ctrl-C reaches the lab, which stops sslsplit itself
            )
        finally:
            stderr.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = set(self.routes)
        while pending:
            if self.proc.returncode is not None:
                raise RuntimeError(f"sslsplit exited with {self.proc.returncode}: {self._tail()}")
            if loop.time() > deadline:
                await self.stop()
                raise RuntimeError(f"sslsplit did not listen within {timeout}s: {self._tail()}")
            for ip in list(pending):
                if _accepts(ip, self.port):
                    pending.discard(ip)
            if pending:
                await asyncio.sleep(0.05)

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            text = (self.logdir / "sslsplit-stderr.log").read_text(errors="replace").strip()
            return " | ".join(text.splitlines()[-3:])
        return ""

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 3.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _accepts(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((ip, port)) == 0
