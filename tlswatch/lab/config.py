"""Lab configuration: a frozen :class:`LabConfig`, loaded from JSON or TOML.

A config file holds the same keys as :class:`LabConfig` (all optional), e.g. in TOML::

    seed = 1
    now = "2019-08-01T12:00:00Z"      # fixed clock: certificates are issued relative to it
    port = 8443                      # one TCP port for every service (0 = pick a free one)
    untargeted = ["example.org"]
    [blockers]                       # method -> domains
    reset = ["blocked-reset.test"]
    dns_nxdomain = ["blocked-nx.test"]

Errors are one line naming the file and the bad key (:class:`LabConfigError`).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "BLOCK_METHODS",
    "DEFAULT_BLOCKERS",
    "DEFAULT_INCOUNTRY",
    "DEFAULT_PRIVATE_CA_DOMAINS",
    "DEFAULT_SSLSPLIT_DOMAINS",
    "DEFAULT_UNTARGETED",
    "DNS_BLOCK_METHODS",
    "HOSTILE_KINDS",
    "LabConfig",
    "LabConfigError",
    "default_targets_path",
    "load_config",
    "load_targets",
]

#: Blocking methods: four triggered by the SNI at the middlebox, one by IP (no listener),
#: three by the censored resolver.
BLOCK_METHODS = (
    "reset",  # RST right after the ClientHello (SO_LINGER 0)
    "drop",  # ClientHello swallowed, nothing ever answered
    "alert",  # a fatal handshake_failure alert record, then FIN
    "blockpage",  # plain HTTP 403 + HTML on the TLS port
    "refused",  # the domain's middlebox address has no listener: connect() gets RST
    "dns_nxdomain",
    "dns_zero",  # A 0.0.0.0
    "dns_blockpage",  # A <the lab blockpage server>
)
DNS_BLOCK_METHODS = ("dns_nxdomain", "dns_zero", "dns_blockpage")
HOSTILE_KINDS = ("silent", "slow", "garbage", "hugechain", "midclose")

# The lab's own names (not the 2019 targets), so blocking never hides interception.
DEFAULT_UNTARGETED = ("example.org", "wikipedia.org", "lab-untargeted.test")
DEFAULT_INCOUNTRY = ("kz-host-1.kz", "kz-host-2.kz", "kz-host-3.kz")
DEFAULT_SSLSPLIT_DOMAINS = ("example.net", "lab-sslsplit.test")
# Served on every path by a CA no store knows: a detector must not call it interception.
DEFAULT_PRIVATE_CA_DOMAINS = ("lab-private-ca.test",)
DEFAULT_BLOCKERS: Mapping[str, tuple[str, ...]] = {
    "reset": ("blocked-reset.test",),
    "drop": ("blocked-drop.test",),
    "alert": ("blocked-alert.test",),
    "blockpage": ("blocked-blockpage.test",),
    "refused": ("blocked-refused.test",),
    "dns_nxdomain": ("blocked-dns-nxdomain.test",),
    "dns_zero": ("blocked-dns-zero.test",),
    "dns_blockpage": ("blocked-dns-blockpage.test",),
}


class LabConfigError(ValueError):
    """A bad lab config or target file; the message is one line naming the file and key."""


def default_targets_path() -> Path:
    """The packaged 2019 target list (37 domains, IMC 2020 Table 2)."""
    return Path(str(resources.files("tlswatch.lab") / "data" / "kz_targets_2019.txt"))


def load_targets(path: Path) -> tuple[str, ...]:
    """Domains of a target file: one per line, ``#`` comments, duplicates dropped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabConfigError(f"{path}: cannot read target list: {exc.strerror}") from None
    out: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip().lower().rstrip(".")
        if not line:
            continue
        if not _is_name(line):
            raise LabConfigError(f"{path}:{lineno}: not a domain name: {raw.strip()!r}")
        if line not in out:
            out.append(line)
    if not out:
        raise LabConfigError(f"{path}: target list is empty")
    return tuple(out)


def _is_name(name: str) -> bool:
    labels = name.split(".")
    return (
        len(name) <= 253
        and len(labels) >= 2
        and all(
            0 < len(lb) <= 63 and lb.replace("-", "").isalnum() and lb.isascii() for lb in labels
        )
    )


@dataclass(frozen=True)
class LabConfig:
    """Everything that shapes a lab. Defaults give the full 2019 lab on 127.77.0.0/16."""

    seed: int = 0
    #: Fixed clock for certificate issuance; None = today 00:00 UTC (stable within a day).
    now: datetime | None = None
    #: First two octets of the lab's /16 inside 127.0.0.0/8.
    address_prefix: str = "127.77"
    #: TCP port of every TLS/HTTP service; None = 443 as root else a free port; 0 = a free port.
    port: int | None = None
    #: DNS port of both resolvers (UDP and TCP); None = 53 as root, else the service port.
    dns_port: int | None = None
    #: Interception target list; None = the packaged 2019 list.
    targets_file: Path | None = None
    untargeted: tuple[str, ...] = DEFAULT_UNTARGETED
    incountry: tuple[str, ...] = DEFAULT_INCOUNTRY
    #: method -> domains (see BLOCK_METHODS).
    blockers: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_BLOCKERS))
    #: "auto": run sslsplit when installed; "required": fail without it; "off".
    sslsplit: Literal["auto", "required", "off"] = "auto"
    sslsplit_domains: tuple[str, ...] = DEFAULT_SSLSPLIT_DOMAINS
    #: Untargeted names whose origin's chain comes from a private CA (the same on every path).
    private_ca_domains: tuple[str, ...] = DEFAULT_PRIVATE_CA_DOMAINS
    #: Send the Qaznet root after the Security Certificate CA (the 2019 box sent leaf+CA).
    send_kz_root: bool = True
    #: Upper bound for every hold (drop, silent, stalled hostile servers), seconds.
    hold_seconds: float = 30.0
    #: Delay between bytes of the slow hostile server, seconds.
    slow_interval: float = 1.0
    #: Handshake/connect timeout of the interceptor towards clients and origins, seconds.
    io_timeout: float = 10.0
    #: Directory for the store file and chain files; None = a temp dir removed on stop.
    workdir: Path | None = None

    def __post_init__(self) -> None:
        _validate(self, "LabConfig")

    def targets(self) -> tuple[str, ...]:
        return load_targets(self.targets_file or default_targets_path())

    def resolved_port(self) -> int:
        if self.port is not None:
            return self.port
        return 443 if _is_root() else 0

    def blocked(self) -> dict[str, str]:
        """domain -> blocking method."""
        return {d: m for m, domains in self.blockers.items() for d in domains}


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _validate(cfg: LabConfig, where: str) -> None:
    def bad(key: str, why: str) -> LabConfigError:
        return LabConfigError(f"{where}: {key}: {why}")

    parts = cfg.address_prefix.split(".")
    if len(parts) != 2 or parts[0] != "127" or not parts[1].isdigit() or int(parts[1]) > 255:
        raise bad(
            "address_prefix", f"must look like '127.N' (loopback only), got {cfg.address_prefix!r}"
        )
    for key in ("port", "dns_port"):
        value = getattr(cfg, key)
        if value is not None and not 0 <= value <= 65535:
            raise bad(key, f"not a port: {value}")
    if cfg.now is not None and cfg.now.tzinfo is None:
        raise bad("now", "must carry a timezone (e.g. ...Z)")
    if cfg.sslsplit not in ("auto", "required", "off"):
        raise bad("sslsplit", f"must be auto, required or off, got {cfg.sslsplit!r}")
    for key in ("hold_seconds", "slow_interval", "io_timeout"):
        if not 0 < getattr(cfg, key) <= 3600:
            raise bad(key, "must be > 0 and <= 3600 seconds")
    seen: dict[str, str] = {}
    for method, domains in cfg.blockers.items():
        if method not in BLOCK_METHODS:
            raise bad(f"blockers.{method}", f"unknown method (one of {', '.join(BLOCK_METHODS)})")
        for d in domains:
            if d in seen:
                raise bad(f"blockers.{method}", f"{d} is already blocked by {seen[d]}")
            seen[d] = method
    for key in ("untargeted", "incountry", "sslsplit_domains", "private_ca_domains"):
        for d in getattr(cfg, key):
            if not _is_name(d):
                raise bad(key, f"not a domain name: {d!r}")
    for d in seen:
        if not _is_name(d):
            raise bad("blockers", f"not a domain name: {d!r}")


_FIELDS = {f.name for f in fields(LabConfig)}
_TUPLES = ("untargeted", "incountry", "sslsplit_domains", "private_ca_domains")


def load_config(path: str | Path, **overrides: Any) -> LabConfig:
    """Load a ``.json`` or ``.toml`` config; ``overrides`` (non-None) win over the file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise LabConfigError(f"{p}: cannot read config: {exc.strerror}") from None
    try:
        data: Any = (
            json.loads(raw) if p.suffix.lower() == ".json" else tomllib.loads(raw.decode("utf-8"))
        )
    except (ValueError, UnicodeDecodeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LabConfigError(f"{p}: not valid {p.suffix.lstrip('.') or 'TOML'}: {msg}") from None
    if not isinstance(data, dict):
        raise LabConfigError(f"{p}: top level must be a table/object")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _FIELDS:
            raise LabConfigError(f"{p}: unknown key {key!r}")
        kwargs[key] = _convert(p, key, value)
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return LabConfig(**kwargs)
    except LabConfigError as exc:
        raise LabConfigError(str(exc).replace("LabConfig:", f"{p}:", 1)) from None


def _convert(p: Path, key: str, value: Any) -> Any:
    def typed(ok: bool, what: str) -> None:
        if not ok:
            raise LabConfigError(f"{p}: {key}: expected {what}, got {type(value).__name__}")

    if key in ("seed", "port", "dns_port"):
        typed(isinstance(value, int) and not isinstance(value, bool), "an integer")
        return value
    if key in ("hold_seconds", "slow_interval", "io_timeout"):
        typed(isinstance(value, int | float) and not isinstance(value, bool), "a number")
        return float(value)
    if key == "send_kz_root":
        typed(isinstance(value, bool), "true/false")
        return value
    if key in ("targets_file", "workdir"):
        typed(isinstance(value, str), "a path string")
        path = Path(value)
        return path if path.is_absolute() else p.parent / path
    if key == "now":
        if isinstance(value, datetime):  # TOML datetime literal
            return value
        typed(isinstance(value, str), "an RFC 3339 time string")
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise LabConfigError(f"{p}: now: not an RFC 3339 time: {value!r}") from None
    if key in _TUPLES:
        typed(isinstance(value, list) and all(isinstance(v, str) for v in value), "a list of names")
        return tuple(v.lower() for v in value)
    if key == "blockers":
        typed(isinstance(value, dict), "a table method -> [domains]")
        out: dict[str, tuple[str, ...]] = {}
        for method, domains in value.items():
            if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
                raise LabConfigError(f"{p}: blockers.{method}: expected a list of names")
            out[method] = tuple(d.lower() for d in domains)
        return out
    if key == "sslsplit":
        typed(isinstance(value, str), "auto/required/off")
        return value
    raise LabConfigError(f"{p}: unknown key {key!r}")  # pragma: no cover - _FIELDS guards
