"""Deterministic record ids, so reruns and resumes can be matched (DESIGN.md §5)."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime

from tlswatch.model import Flow, Target, Vantage, to_dict

__all__ = ["new_run_id", "record_id"]


def record_id(
    *,
    source: str,
    target: Target | None = None,
    vantage: Vantage | None = None,
    attempt: int = 0,
    flow: Flow | None = None,
    file_sha256: str | None = None,
    first_packet_ns: int | None = None,
    extra: str | None = None,
) -> str:
    """A hash of what identifies one observation; the same inputs give the same id."""
    key = {
        "source": source,
        "target": to_dict(target) if target else None,
        "vantage": to_dict(vantage) if vantage else None,
        "attempt": attempt,
        "flow": to_dict(flow) if flow else None,
        "file": file_sha256,
        "first_ns": first_packet_ns,
        "extra": extra,
    }
    canon = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:32]


def new_run_id(started: datetime) -> str:
    """Runs differ even when started in the same second: time prefix plus randomness."""
    return started.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)
