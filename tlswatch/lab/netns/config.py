"""What shapes a network-namespace lab: a frozen :class:`NetnsConfig`.

Errors are one line (:class:`NetnsError`), naming the bad field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from tlswatch.lab.config import DEFAULT_UNTARGETED, default_targets_path, load_targets

__all__ = ["ALERTS", "MAX_HOPS", "NetnsConfig", "NetnsError"]

#: Alerts the injector can send (name -> TLS AlertDescription).
ALERTS = {"handshake_failure": 40, "access_denied": 49, "internal_error": 80}
#: Routers on either side of the middlebox; a /24 per link keeps addresses readable.
MAX_HOPS = 12


class NetnsError(RuntimeError):
    """The namespace lab could not start or was misconfigured; the message is one line."""


@dataclass(frozen=True)
class NetnsConfig:
    """Defaults: client - r1 - r2 - mb - r3 - server, the 2019 target list intercepted."""

    hops_before_middlebox: int = 2
    hops_after_middlebox: int = 1
    seed: int = 0
    #: Fixed clock for certificate issuance; None = today 00:00 UTC.
    now: datetime | None = None
    #: Interception targets; None = the list in ``targets_file`` (default: the 2019 list).
    targets: tuple[str, ...] | None = None
    targets_file: Path | None = None
    #: Served too, spliced untouched by the interceptor (treatment "pass").
    untargeted: tuple[str, ...] = DEFAULT_UNTARGETED
    #: ClientHello dropped on path, RST injected towards both ends.
    reset_domains: tuple[str, ...] = ("reset.test",)
    #: ClientHello dropped on path, a fatal TLS alert then RST injected towards the client.
    alert_domains: tuple[str, ...] = ("alert.test",)
    alert: Literal["handshake_failure", "access_denied", "internal_error"] = "handshake_failure"
    send_kz_root: bool = True
    #: Interceptor handshake/connect timeout and relay bound, seconds.
    io_timeout: float = 10.0
    hold_seconds: float = 30.0
    #: Bound on the whole start (services forging keys, sniffer ready), seconds.
    start_timeout: float = 60.0
    #: Where certificates and logs go; None = a temp dir removed at teardown.
    workdir: Path | None = None

    def __post_init__(self) -> None:
        for key in ("hops_before_middlebox", "hops_after_middlebox"):
            value = getattr(self, key)
            if not isinstance(value, int) or not 0 <= value <= MAX_HOPS:
                raise NetnsError(f"NetnsConfig: {key}: must be an integer 0..{MAX_HOPS}")
        if self.now is not None and self.now.tzinfo is None:
            raise NetnsError("NetnsConfig: now: must carry a timezone")
        if self.alert not in ALERTS:
            raise NetnsError(f"NetnsConfig: alert: one of {', '.join(ALERTS)}")
        for key in ("io_timeout", "hold_seconds", "start_timeout"):
            if not 0 < getattr(self, key) <= 3600:
                raise NetnsError(f"NetnsConfig: {key}: must be > 0 and <= 3600 seconds")
        seen: dict[str, str] = {}
        for key in ("reset_domains", "alert_domains", "untargeted"):
            for name in getattr(self, key):
                if not _is_name(name):
                    raise NetnsError(f"NetnsConfig: {key}: not a domain name: {name!r}")
                if name in seen:
                    raise NetnsError(f"NetnsConfig: {key}: {name} is already in {seen[name]}")
                seen[name] = key

    def target_list(self) -> tuple[str, ...]:
        if self.targets is not None:
            for name in self.targets:
                if not _is_name(name):
                    raise NetnsError(f"NetnsConfig: targets: not a domain name: {name!r}")
            return tuple(dict.fromkeys(n.lower() for n in self.targets))
        try:
            return load_targets(self.targets_file or default_targets_path())
        except ValueError as exc:
            raise NetnsError(str(exc)) from None

    def treatments(self) -> dict[str, str]:
        """domain -> "intercept" | "reset" | "alert" | "pass", in address order."""
        out: dict[str, str] = {}
        for name in self.target_list():
            out.setdefault(name, "intercept")
        for key, treatment in (("reset_domains", "reset"), ("alert_domains", "alert")):
            for name in getattr(self, key):
                if out.get(name, treatment) != treatment:
                    raise NetnsError(f"NetnsConfig: {key}: {name} is also an interception target")
                out[name] = treatment
        for name in self.untargeted:
            if name in out:
                raise NetnsError(f"NetnsConfig: untargeted: {name} is also an interception target")
            out[name] = "pass"
        return out


def _is_name(name: object) -> bool:
    if not isinstance(name, str) or len(name) > 253:
        return False
    labels = name.split(".")
    return len(labels) >= 2 and all(
        0 < len(lb) <= 63 and lb.replace("-", "").isalnum() and lb.isascii() and lb == lb.lower()
        for lb in labels
    )
