"""The reaper: a child that tears a namespace lab down when its owner goes away.

``python -m tlswatch.lab.netns.reaper TAG [WORKDIR]`` reads its stdin, a pipe whose write end
only the lab process holds. The pipe closes when the lab exits normally, raises, is
interrupted *or* is SIGKILLed; the reaper then kills what runs in the lab's namespaces,
deletes them and their /etc/netns entries, removes WORKDIR, prints ``reaped N`` and exits.
It runs in its own session and ignores SIGINT/SIGHUP, so the Ctrl-C meant for the lab does
not take the reaper down before it has cleaned up.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys

from tlswatch.lab.netns.topology import TAG_RE, remove_lab

__all__ = ["main", "reap"]


def reap(tag: str, workdir: str | None, ip: str = "ip") -> int:
    removed = remove_lab(tag, ip)
    if workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return len(removed)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 3 or not TAG_RE.match(args[0] + "-x"):
        sys.stderr.write("usage: python -m tlswatch.lab.netns.reaper TAG [WORKDIR [IP]]\n")
        return 2
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    # SIGTERM: clean up now instead of waiting for the pipe.
    signal.signal(signal.SIGTERM, lambda *_: os.close(0))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    count = reap(args[0], args[1] if len(args) > 1 and args[1] else None,
                 args[2] if len(args) > 2 else "ip")
    try:
        sys.stdout.write(f"reaped {count}\n")
        sys.stdout.flush()
    except OSError:
        pass  # nobody is listening any more (the lab was killed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
