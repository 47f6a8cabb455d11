"""Campaign inputs: targets (names, URLs, Citizen Lab CSV) and vantages, streamed.

Targets come from arguments and files and are yielded one at a time, so a list of a million
lines is never held in memory. A bad line never stops a campaign: it is reported once as
``FILE:LINE: what is wrong`` through the ``report`` callback and skipped.

Names are normalised to what goes on the wire: lowercase A-labels without a trailing dot.
Non-ASCII names are converted with the ``idna`` package (IDNA 2008 + UTS #46 mapping) when
it is installed, else with Python's built-in ``idna`` codec (IDNA 2003); ``IDNA_BACKEND`` says
which. ASCII names are checked by our own rules, which allow ``_`` (some real hostnames carry
it and servers accept it in SNI) and require valid ``xn--`` labels.

Duplicate targets are dropped (and reported) with a set of the names seen so far: one short
string per distinct target, about 100 bytes each, i.e. ~100 MB for a million names. Past
``MAX_DEDUP`` distinct names the set stops growing and later duplicates are no longer caught
(a resumed run still never writes a record twice: ids already in the output are skipped).
"""

from __future__ import annotations

import csv
import ipaddress
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final
from urllib.parse import urlsplit

from tlswatch.ids import record_id
from tlswatch.model import Target, Vantage

__all__ = [
    "IDNA_BACKEND",
    "MAX_DEDUP",
    "MAX_LINE_BYTES",
    "MAX_VANTAGES",
    "Endpoint",
    "InputLineError",
    "Report",
    "TargetSpec",
    "Task",
    "VantageSpec",
    "count_lines",
    "iter_targets",
    "iter_tasks",
    "load_vantages",
    "make_task",
    "parse_endpoint",
    "parse_target",
    "to_a_label",
]

#: Longer lines are reported and skipped (URLs in test lists are far shorter).
MAX_LINE_BYTES: Final = 8192
#: Distinct target names remembered for duplicate detection (see the module docstring).
MAX_DEDUP: Final = 5_000_000
#: A vantage file is small and read whole; this only bounds a wrong file given by mistake.
MAX_VANTAGES: Final = 100_000

#: Called with one ready-to-print message per bad input line.
Report = Callable[[str], None]


class InputLineError(ValueError):
    """What is wrong with one input item (the caller adds ``FILE:LINE:``)."""


try:
    import idna as _idna

    IDNA_BACKEND: Final[str] = "idna"
except ImportError:  # pragma: no cover - the idna package is optional
    _idna = None  # type: ignore[assignment]
    IDNA_BACKEND = "python-codec"  # type: ignore[misc]

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_NUMERIC = re.compile(r"[0-9.]+\Z")


def to_a_label(name: str) -> str:
    """Normalise a domain name to lowercase A-labels (no trailing dot) or raise InputLineError."""
    text = name.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise InputLineError("empty name")
    if not text.isascii():
        try:
            if _idna is not None:
                text = _idna.encode(text, uts46=True, transitional=False).decode("ascii")
            else:  # pragma: no cover
                text = text.encode("idna").decode("ascii")
        except (UnicodeError, ValueError) as e:
            raise InputLineError(f"invalid internationalised name {name!r} ({e})") from None
    text = text.lower()
    if _NUMERIC.match(text):
        raise InputLineError(f"{name!r} is not a valid IP address or domain name")
    if len(text) > 253:
        raise InputLineError(f"name longer than 253 characters: {name[:40]!r}…")
    labels = text.split(".")
    for label in labels:
        if not label:
            raise InputLineError(f"empty label in {name!r}")
        if len(label) > 63:
            raise InputLineError(f"label longer than 63 characters in {name!r}")
        if not _LABEL.match(label):
            raise InputLineError(f"invalid character or hyphen placement in {name!r}")
        if label.startswith("xn--") and _idna is not None:
            try:
                _idna.decode(label)
            except (UnicodeError, ValueError):
                raise InputLineError(f"invalid A-label {label!r} in {name!r}") from None
    if labels[-1].isdigit():
        raise InputLineError(f"{name!r} has an all-numeric top-level label")
    return text


def parse_target(text: str) -> str:
    """One target line (a name or a URL; scheme, port and path ignored) -> its A-label name."""
    s = text.strip()
    if not s:
        raise InputLineError("empty target")
    if any(c.isspace() for c in s):
        raise InputLineError(f"expected one domain or URL, got {s[:60]!r}")
    try:
        ip = ipaddress.ip_address(s.strip("[]"))
    except ValueError:
        pass
    else:
        raise InputLineError(f"{ip} is an IP address, not a domain (use --connect to choose IPs)")
    try:
        parts = urlsplit(s if "://" in s or s.startswith("//") else "//" + s)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as e:
        raise InputLineError(f"not a valid URL {s[:60]!r} ({e})") from None
    if not host:
        raise InputLineError(f"no host in {s[:60]!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return to_a_label(host)
    raise InputLineError(f"{ip} is an IP address, not a domain (use --connect to choose IPs)")


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A target name (A-label) and where it came from (``FILE:LINE`` or ``argument N``)."""

    domain: str
    where: str


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return host if self.port is None else f"{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address (names are refused)."""
    s = text.strip()
    port_text: str | None = None
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise InputLineError(f"{s!r}: expected [IPv6]:PORT")
        port_text = rest[1:] if rest else None
    elif s.count(":") == 1:
        host, port_text = s.split(":")
    else:
        host = s
    try:
        ip = str(ipaddress.ip_address(host))
    except ValueError:
        raise InputLineError(f"{s!r} is not an IP address (names are not accepted here)") \
            from None
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise InputLineError(f"{s!r}: port must be a number from 1 to 65535")
        port = int(port_text)
    return Endpoint(ip, port)


def _lines(stream: BinaryIO, where: str, report: Report) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line; over-long and non-UTF-8 lines are reported, skipped."""
    lineno = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            report(f"{where}:{lineno}: line longer than {MAX_LINE_BYTES} bytes")
            while raw and not raw.endswith(b"\n"):  # skip the rest without holding it
                raw = stream.readline(1 << 16)
            continue
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield lineno, raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            report(f"{where}:{lineno}: not UTF-8 text")


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0].strip() if "#" in line else line.strip()


def _targets_in(stream: BinaryIO, where: str, report: Report) -> Iterator[tuple[str, str]]:
    """(domain, FILE:LINE) from a plain list or a Citizen Lab CSV (detected by its header)."""
    url_col: int | None = None
    ncols = 0
    first = True
    for lineno, line in _lines(stream, where, report):
        loc = f"{where}:{lineno}"
        if first:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            first = False
            header = [h.strip().lower() for h in line.split(",")]
            if len(header) > 1 and "url" in header:
                url_col, ncols = header.index("url"), len(header)
                continue
        if url_col is None:
            text = _strip_comment(line)
            if not text:
                continue
        else:
            if not line.strip():
                continue
            # One row per line: a broken quote spoils only its own line (test lists never
            # put a newline inside a field).
            try:
                rows = list(csv.reader([line], strict=True))
            except csv.Error as e:
                report(f"{loc}: malformed CSV row ({e})")
                continue
            row = rows[0] if rows else []
            if len(row) != ncols:
                report(f"{loc}: malformed CSV row: {len(row)} fields, the header has {ncols}")
                continue
            text = row[url_col].strip()
            if not text:
                report(f"{loc}: malformed CSV row: empty url")
                continue
        try:
            yield parse_target(text), loc
        except InputLineError as e:
            report(f"{loc}: {e}")


def iter_targets(
    domains: Iterable[str],
    files: Iterable[str | Path],
    *,
    report: Report,
    dedup: bool = True,
) -> Iterator[TargetSpec]:
    """Targets from ``domains`` (arguments) then each file (``-`` is stdin), lazily.

    Files are opened one at a time when reached; an unreadable file is reported and skipped
    (callers that want a hard error check readability first).
    """
    seen: set[str] = set()

    def fresh(domain: str, where: str) -> bool:
        if not dedup:
            return True
        if domain in seen:
            report(f"{where}: duplicate target {domain}, skipped")
            return False
        if len(seen) < MAX_DEDUP:
            seen.add(domain)
        return True

    for n, arg in enumerate(domains, 1):
        where = f"argument {n}"
        try:
            domain = parse_target(arg)
        except InputLineError as e:
            report(f"{where}: {e}")
            continue
        if fresh(domain, where):
            yield TargetSpec(domain, where)
    for f in files:
        name = str(f)
        try:
            stream: BinaryIO = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115
        except OSError as e:
            report(f"{name}: cannot read ({e.strerror or e})")
            continue
        try:
            for domain, where in _targets_in(stream, "<stdin>" if name == "-" else name, report):
                if fresh(domain, where):
                    yield TargetSpec(domain, where)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()


def count_lines(path: str | Path) -> int:
    """Non-empty lines of a file, counted in blocks (an upper bound for a progress ETA)."""
    count = 0
    tail = b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
            tail = block[-1:]
    return count + (tail != b"\n")


@dataclass(frozen=True, slots=True)
class VantageSpec:
    """A chosen destination IP (Censored Planet style): the handshake goes there, no DNS."""

    name: str
    ip: str
    port: int | None = None

    @property
    def vantage(self) -> Vantage:
        return Vantage(name=self.name, kind="remote")


def load_vantages(path: str | Path, *, report: Report) -> list[VantageSpec]:
    """Lines ``name IP[:PORT]`` or ``IP[:PORT]`` (``#`` comments); bad lines reported, skipped.

    Raises OSError when the file cannot be read.
    """
    out: list[VantageSpec] = []
    seen: set[VantageSpec] = set()
    where = str(path)
    with open(path, "rb") as f:
        for lineno, line in _lines(f, where, report):
            loc = f"{where}:{lineno}"
            text = _strip_comment(line)
            if not text:
                continue
            parts = text.split()
            if len(parts) > 2:
                report(f"{loc}: expected 'name IP[:PORT]' or 'IP[:PORT]'")
                continue
            try:
                ep = parse_endpoint(parts[-1])
            except InputLineError as e:
                report(f"{loc}: {e}")
                continue
            v = VantageSpec(parts[0] if len(parts) == 2 else str(ep), ep.ip, ep.port)
            if v in seen:
                report(f"{loc}: duplicate vantage {v.name}, skipped")
                continue
            if len(out) >= MAX_VANTAGES:
                report(f"{loc}: more than {MAX_VANTAGES} vantages; the rest is ignored")
                break
            seen.add(v)
            out.append(v)
    return out


@dataclass(frozen=True, slots=True)
class Task:
    """One target at one vantage (or direct, with DNS). ``id`` is the record's id."""

    domain: str
    sni: str | None
    port: int
    vantage: VantageSpec | None = None
    where: str = ""
    id: str = field(default="", compare=False)

    @property
    def ip(self) -> str | None:
        return self.vantage.ip if self.vantage else None

    @property
    def record_target(self) -> Target:
        """The target as requested (the IP only when chosen, never the resolved one)."""
        return Target(domain=self.domain, sni=self.sni, ip=self.ip, port=self.port)

    @property
    def record_vantage(self) -> Vantage:
        return self.vantage.vantage if self.vantage else Vantage()


def make_task(
    target: TargetSpec, vantage: VantageSpec | None, *, port: int, send_sni: bool
) -> Task:
    t_port = (vantage.port if vantage and vantage.port else None) or port
    task = Task(target.domain, target.domain if send_sni else None, t_port, vantage, target.where)
    # Computed from the request, not from what DNS returned, so a resume finds it again.
    rid = record_id(source="probe", target=task.record_target, vantage=task.record_vantage,
                    attempt=0)
    return Task(task.domain, task.sni, task.port, vantage, target.where, rid)


def iter_tasks(
    targets: Iterable[TargetSpec],
    vantages: Sequence[VantageSpec] = (),
    *,
    port: int = 443,
    send_sni: bool = True,
) -> Iterator[Task]:
    """Every target at every vantage (or once, direct, without vantages), lazily."""
    for t in targets:
        if not vantages:
            yield make_task(t, None, port=port, send_sni=send_sni)
        for v in vantages:
            yield make_task(t, v, port=port, send_sni=send_sni)
