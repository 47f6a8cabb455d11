"""``tlswatch analyse``: judge the TLS handshakes and DNS answers stored in capture files.

Orchestration only: :mod:`tlswatch.capture.observe` reads and observes, and
:mod:`tlswatch.classify.capture_record` judges; this module walks the inputs, hashes each
file (in a thread, alongside the analysis: ids need the hash), writes records and input
records, resumes, and reports on stderr.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final, Protocol, TextIO

import click

from tlswatch.bogons import DEFAULT_BOGONS, BogonKind, routable_policy
from tlswatch.capture import CaptureFormatError, CaptureWarning, open_capture
from tlswatch.capture.magic import looks_like_capture
from tlswatch.capture.observe import CaptureObserver, Observation, ObserveStats
from tlswatch.classify.capture_record import capture_record
from tlswatch.classify.chain import ChainJudge
from tlswatch.classify.rules import RULES_VERSION
from tlswatch.cli.errors import InputError
from tlswatch.cli.jobs import parse_jobs
from tlswatch.cli.output import OUTPUT_HELP, check_output
from tlswatch.cli.progress import Progress
from tlswatch.failures import Verdict, outcome_class
from tlswatch.ids import new_run_id
from tlswatch.model import SCHEMA, InputRecord, Record, Vantage, to_dict, to_plain
from tlswatch.probe.runrecord import closing_run_record, run_record
from tlswatch.sinks.base import EncodedRecord, Sink, SinkError, is_empty_output, open_sink
from tlswatch.sinks.jsonl import JsonlWriter
from tlswatch.textsafe import terminal_safe
from tlswatch.tls.keylog import KeyLog, load_keylog
from tlswatch.x509.registry import RegistryError, load_registry
from tlswatch.x509.stores import AUTO_CANDIDATES, StoreError, load_store, load_stores

__all__ = ["AnalyseOptions", "FileResult", "analyse", "analyse_file", "default_key_path",
           "iter_inputs", "key_id", "parse_size", "record_dict"]

# First bytes of what open_capture() accepts: pcap (all variants), pcapng, gzip, xz, bzip2.
_PENDING_MAX: Final = 4096  # observations held while the file's hash is being computed
_BATCH: Final = 64  # records per write; every file ends with an fsync-ed checkpoint


class _Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Duplicate(Exception):
    """The file's content was already analysed in this run (another path)."""


def default_key_path() -> Path:
    """Where ``--anonymize`` keeps its key unless ``--anonymize-key`` says otherwise."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "tlswatch" / "anonymize.key"


def key_id(key: bytes) -> str:
    """A short public name of a pseudonymisation key (a hash: reveals nothing of the key)."""
    return hashlib.sha256(b"tlswatch anonymize key id\x00" + key).hexdigest()[:16]


def iter_inputs(args: tuple[str, ...], note: Callable[[str], None]) -> Iterator[tuple[Path, bool]]:
    """(path, given explicitly) for each capture to analyse, directories walked in sorted
    order; files in a directory that are not captures (by magic number) are noted, skipped."""
    seen: set[str] = set()
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for name in sorted(files):
                    f = Path(root) / name
                    if not f.is_file() or str(f) in seen:
                        continue
                    seen.add(str(f))
                    if looks_like_capture(f):
                        yield f, False
                    else:
                        note(f"{terminal_safe(str(f))}: not a capture, skipped")
        elif str(p) not in seen:
            seen.add(str(p))
            yield p, True


_SIZE_UNITS: Final = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "KIB": 1 << 10, "M": 10**6,
                      "MB": 10**6, "MIB": 1 << 20, "G": 10**9, "GB": 10**9, "GIB": 1 << 30}


def parse_size(text: str) -> int:
    """``64MB``, ``1.5GB``, ``512KiB``, ``1000`` -> bytes (decimal units, binary with "i")."""
    t = text.strip().upper()
    num = t.rstrip("KMGIB")
    unit = t[len(num):]
    try:
        value = float(num)
    except ValueError:
        value = -1.0
    if unit not in _SIZE_UNITS or value < 0:
        raise InputError(f"--split-size {text!r}: expected a size such as 64MB, 1GB or 0")
    return int(value * _SIZE_UNITS[unit])


def _check_explicit(path: Path) -> None:
    """A file named on the command line must be a readable capture: else a one-line error."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    try:
        open_capture(path).close()
    except CaptureFormatError as e:
        raise InputError(str(e)) from None
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None


@dataclass(slots=True)
class _Existing:
    """What a resumed output already holds."""

    ids: set[str] = field(default_factory=set)
    done: dict[str, str] = field(default_factory=dict)  # sha256 -> path, complete inputs
    key_ids: set[str | None] = field(default_factory=set)
    lines: int = 0


def _existing(path: Path) -> _Existing:
    from tlswatch.sinks.readers import read_records  # (--resume only)

    out = _Existing()
    if not path.exists():
        return out
    for obj in read_records(path):
        if obj.get("schema") != SCHEMA:
            continue
        out.lines += 1
        kind = obj.get("kind")
        if kind == "input":
            if obj.get("complete") and isinstance(obj.get("sha256"), str):
                out.done[obj["sha256"]] = str(obj.get("path"))
                out.key_ids.add(obj.get("anonymize_key_id"))
        elif kind is None and isinstance(obj.get("id"), str):
            out.ids.add(obj["id"])
    return out


@dataclass(slots=True)
class _Totals:
    files: int = 0
    skipped_done: int = 0
    skipped_other: int = 0
    partial: int = 0
    errors: int = 0
    bytes: int = 0
    packets: int = 0
    flows: int = 0
    handshakes: int = 0
    chains: int = 0
    encrypted: int = 0
    decrypted: int = 0
    decrypt_failed: int = 0
    cut_by_end: int = 0
    dns_answers: int = 0
    dns_ok: int = 0
    dns_tcp: int = 0
    quic_flows: int = 0
    starttls: int = 0
    starttls_failed: int = 0
    reassembled: int = 0
    records: int = 0
    already: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    anomalies: Counter[str] = field(default_factory=Counter)

    def add_stats(self, st: ObserveStats) -> None:
        """What one observer (a file, or a chunk of one) counted."""
        self.handshakes += st.handshakes
        self.chains += st.chains
        self.encrypted += st.encrypted_chains
        self.decrypted += st.decrypted
        self.decrypt_failed += st.decrypt_failed
        self.cut_by_end += st.cut_by_end
        self.dns_tcp += st.dns_tcp_answers
        self.quic_flows += st.quic_flows
        self.starttls += st.starttls
        self.starttls_failed += st.starttls_failed
        self.reassembled += st.reassembled

    def add_figures(self, other: _Totals) -> None:
        """Another file's or chunk's observation figures (not its records or verdicts,
        which are counted as they are written)."""
        for name in _FIGURES:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.anomalies.update(other.anomalies)


_FIGURES: Final = ("flows", "handshakes", "chains", "encrypted", "decrypted", "decrypt_failed",
                   "cut_by_end", "dns_answers", "dns_ok", "dns_tcp", "quic_flows", "starttls",
                   "starttls_failed", "reassembled")


class _FileProgress(Progress):
    """The probe's progress line, showing which file, how far and MB/s instead of an ETA."""

    def __init__(self, stream: TextIO, *, live: bool, verbose: bool,
                 interval: float = 0.2) -> None:
        super().__init__(stream, live=live, verbose=verbose, interval=interval)
        self.file = ""
        self.index = 0
        self.count = 0
        self.size = 1
        self.read = 0
        self.bytes_before = 0

    def line(self, rec: Record) -> str:
        return verbose_line(rec)

    def status(self) -> str:
        elapsed = max(1e-9, time.monotonic() - self.t0)
        mbs = (self.bytes_before + self.read) / elapsed / 1e6
        pct = min(100, 100 * self.read // max(1, self.size))
        counts = "  ".join(f"{v} {self.counts[v]}" for v in Verdict if self.counts[v])
        return (f"file {self.index}/{self.count} {pct:3d}% {terminal_safe(self.file, 40)}  "
                f"{self.done} records  {counts}  {mbs:.1f} MB/s")

    def tick(self, read: int) -> None:
        self.read = read
        self._draw()


def verbose_line(rec: Record) -> str:
    """One line per record: verdict, outcome, name, client -> server, capture."""
    t, f = rec.target, rec.flow
    where = "-"
    if f is not None:
        where = (f"{_hostport(f.client_ip, f.client_port)} -> "
                 f"{_hostport(f.server_ip, f.server_port)}"
                 + ("/udp" if f.transport == "udp" else ""))
    return (f"{rec.verdict:<12} {terminal_safe(rec.outcome, 90)}  {terminal_safe(t.domain, 80)}"
            f"  {where}  {terminal_safe(rec.vantage.name, 60)}")


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


class _Writer(Protocol):
    def write(self, record: Any) -> None: ...


class _FileRun:
    """One capture: observe, hash alongside, judge, write."""

    def __init__(self, path: Path, *, judge: ChainJudge, writer: _Writer, run_id: str,
                 existing: _Existing, pseudonym: Callable[[str], str] | None,
                 progress: _FileProgress, totals: _Totals, seen_sha: dict[str, str],
                 known_sha: str | None, keylog: KeyLog | None = None,
                 bogons: frozenset[BogonKind] | None = None,
                 share: tuple[int, int] | None = None) -> None:
        self.path = path
        self.share = share  # (index, count): one of several processes on this file
        self.keylog = keylog
        self.bogons = bogons
        self.judge = judge
        self.writer = writer
        self.run_id = run_id
        self.existing = existing
        self.pseudonym = pseudonym
        self.progress = progress
        self.totals = totals
        self.seen_sha = seen_sha
        self.sha: str | None = None  # known and checked: records can be written
        self._digest: str | None = known_sha
        self.pending: list[Observation] = []
        self.records = 0
        self.vantage = Vantage(name=path.name, kind="capture")
        self._hasher: threading.Thread | None = None
        self._hash_error: OSError | None = None
        self.observer: CaptureObserver | None = None
        self.note: str | None = None

    def _hash(self) -> None:
        """In a thread (hashlib releases the GIL): ``sha`` is set by the main thread."""
        try:
            self._digest = _sha256_now(self.path)
        except OSError as e:
            self._hash_error = e

    def _sha_ready(self, wait: bool) -> bool:
        """Is the file's hash known (and checked against files done in this run)?"""
        if self.sha is not None:
            return True
        t = self._hasher
        if t is not None:
            if wait:
                t.join()
            elif t.is_alive():
                return False
        if self._hash_error is not None:
            raise self._hash_error
        assert self._digest is not None
        if self._digest in self.seen_sha:
            raise _Duplicate(self.seen_sha[self._digest])
        self.sha = self._digest
        return True

    def _flush(self) -> None:
        pending, self.pending = self.pending, []
        for obs in pending:
            self._write(obs)

    def _observation(self, obs: Observation) -> None:
        if self.sha is None:
            self.pending.append(obs)
            if self._sha_ready(wait=len(self.pending) >= _PENDING_MAX):
                self._flush()
            return
        self._write(obs)

    def _write(self, obs: Observation) -> None:
        assert self.sha is not None
        out = capture_record(obs, self.judge, run_id=self.run_id, file_sha256=self.sha,
                             vantage=self.vantage, pseudonym=self.pseudonym,
                             bogons=self.bogons)
        t = self.totals
        if out is None:
            t.dns_ok += 1
            return
        rec: Record = out[0]
        if rec.id in self.existing.ids:
            t.already += 1
            return
        self.writer.write(rec)  # (JSON sinks encode it directly: no dict in between)
        self.records += 1
        t.records += 1
        t.verdicts[rec.verdict] += 1
        t.outcomes[outcome_class(rec.outcome)] += 1
        self.progress.record(rec)

    def _tick(self) -> None:
        obs = self.observer
        if obs is not None:
            self.progress.tick(obs.reader.bytes)
        if self.pending and self._sha_ready(wait=False):
            self._flush()

    def run(self) -> InputRecord:
        if self._digest is None:
            self._hasher = threading.Thread(target=self._hash, name="sha256", daemon=True)
            self._hasher.start()
        else:
            self._sha_ready(wait=True)
        self.observer = obs = CaptureObserver(self.path, self._observation, on_tick=self._tick,
                                              keylog=self.keylog, share=self.share)
        try:
            obs.run()
        finally:
            obs.close()
        self._sha_ready(wait=True)
        self._flush()
        assert self.sha is not None
        self.seen_sha[self.sha] = str(self.path)
        reader = obs.reader
        anomalies = obs.anomalies
        st = obs.stats
        t = self.totals
        t.packets += reader.packets
        t.flows += obs.flows_seen
        t.dns_answers += st.dns_answers
        t.add_stats(st)
        t.anomalies.update(anomalies)
        self.note, key_notes = keylog_notes(st.key_logs, obs.embedded_keylog.summary(),
                                            st.decrypt_failed)
        notes = [*reader.warnings, *key_notes]
        return InputRecord(
            run_id=self.run_id, path=str(self.path), sha256=self.sha,
            size=self.path.stat().st_size, records=self.records, complete=True,
            partial=reader.partial, format=reader.capture.format, packets=reader.packets,
            flows=obs.flows_seen, handshakes=st.handshakes,
            anomalies=dict(sorted(anomalies.items())), warnings=tuple(notes),
            anonymize_key_id=None)


def task_error(e: Exception) -> tuple[str, str]:
    """A worker task's failure as (error_kind, message): "format" (not a capture), "os"
    (cannot read) or "internal" (a bug of ours)."""
    if isinstance(e, CaptureFormatError):
        return "format", str(e)
    if isinstance(e, OSError):
        return "os", str(e.strerror or e)
    return "internal", f"{type(e).__name__}: {e}"


def keylog_notes(embedded: int, summary: str, failed: int) -> tuple[str | None, list[str]]:
    """The input record's notes on key logs: (the note on embedded ones, all notes)."""
    note = f"{embedded} embedded TLS key log(s) read: {summary}" if embedded else None
    notes = [note] if note else []
    if failed:
        notes.append(f"the key log did not decrypt {failed} TLS 1.3 handshake(s) (wrong "
                     "secrets for their client randoms?): their chains stay encrypted")
    return note, notes


_CHAIN_CACHE: dict[int, tuple[object, list[Any]]] = {}
_CHAIN_CACHE_MAX: Final = 1024


def record_dict(rec: Record) -> dict[str, Any]:
    """Exactly ``to_dict(rec)``, faster: a judged chain (the bulk of a record) is converted
    once per chain the judge hands out, then reused (keyed by the chain tuple's identity,
    which the judge's cache keeps across hits)."""
    out: dict[str, Any] = {}
    for f in _RECORD_FIELDS:
        value = getattr(rec, f)
        if value is None:
            continue
        if f == "chain" and value:
            hit = _CHAIN_CACHE.get(id(value))
            if hit is None or hit[0] is not value:
                if len(_CHAIN_CACHE) >= _CHAIN_CACHE_MAX:
                    _CHAIN_CACHE.clear()
                hit = (value, to_plain(value))
                _CHAIN_CACHE[id(value)] = hit
            out[f] = hit[1]
        else:
            out[f] = to_plain(value)
    return out


_RECORD_FIELDS: Final = tuple(f.name for f in dataclasses.fields(Record))


def _sha256_now(path: Path) -> str:
    from tlswatch.cli.prehash import sha256  # (started early by tlswatch.cli.main, maybe)

    return sha256(path)


def _summary(t: _Totals, elapsed: float, top: int = 10) -> str:
    lines = [f"files          {t.files} analysed" + (f", {t.partial} partial" if t.partial else "")
             + (f", {t.skipped_done} already done" if t.skipped_done else "")
             + (f", {t.skipped_other} skipped" if t.skipped_other else "")
             + (f", {t.errors} failed" if t.errors else ""),
             f"packets        {t.packets:,} in {t.flows:,} TCP flows"
             + (f" and {t.quic_flows:,} QUIC flows" if t.quic_flows else "")
             + f"; {t.dns_answers:,} DNS answers"
             + (f" ({t.dns_tcp:,} over TCP)" if t.dns_tcp else "")
             + f" ({t.dns_ok:,} with nothing wrong: no record)"
             + (f"; {t.reassembled:,} IP datagrams reassembled from fragments"
                if t.reassembled else ""),
             f"TLS handshakes {t.handshakes:,} ({t.chains:,} chains in cleartext, "
             f"{t.encrypted:,} encrypted: TLS 1.3" + (
                 f"; {t.decrypted:,} decrypted with key logs" if t.decrypted else "") + (
                 f"; {t.decrypt_failed:,} not decrypted by the key log"
                 if t.decrypt_failed else "") + ")" + (
                 f"; {t.cut_by_end:,} unanswered when the capture ended (no record)"
                 if t.cut_by_end else "") + (
                 f"; {t.starttls:,} after a STARTTLS upgrade" if t.starttls else "") + (
                 f", {t.starttls_failed:,} STARTTLS refused or cut" if t.starttls_failed
                 else ""),
             "verdict        records"]
    for v in Verdict:
        if t.verdicts[v]:
            lines.append(f"  {v.value:<12} {t.verdicts[v]:>7}")
    if t.outcomes:
        lines.append(f"outcome (top {top})")
        for name, n in t.outcomes.most_common(top):
            lines.append(f"  {terminal_safe(name, 40):<28} {n:>7}")
    if t.anomalies:
        lines.append(f"anomalies (top {top})")
        for name, n in t.anomalies.most_common(top):
            lines.append(f"  {terminal_safe(name, 40):<28} {n:>7}")
    mb = t.bytes / 1e6
    lines.append(f"{t.records} records ({t.already} already in the output) from {mb:,.1f} MB "
                 f"in {elapsed:.2f} s ({mb / max(elapsed, 1e-9):,.1f} MB/s)")
    return "\n".join(lines)


@click.command()
@click.argument("inputs", nargs=-1, required=True, metavar="CAPTURE|DIR...")
@click.option("--store", "stores", multiple=True, metavar="NAME|PATH|auto|all",
              help="Trust store(s) to judge chains against (repeatable), at the time of each "
                   "handshake. Default: auto, the Mozilla snapshot nearest before that time "
                   "(auto cannot be combined with other stores).")
@click.option("--registry", "registries", multiple=True, type=click.Path(path_type=Path),
              metavar="FILE", help="Extra interception-CA registry (JSON or PEM), repeatable.")
@click.option("--keylog", "keylogs", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE",
              help="TLS key log (SSLKEYLOGFILE format), repeatable: TLS 1.3 handshakes whose "
                   "client random it holds are decrypted and their chains judged. Key logs "
                   "embedded in a pcapng (Decryption Secrets Blocks) apply to that capture "
                   "without this option.")
@click.option("-o", "--output", metavar="FILE",
              help=OUTPUT_HELP)
@click.option("--resume", is_flag=True,
              help="Continue FILE of -o: skip captures already complete there (same content, "
                   "by SHA-256), finish the rest without repeating a record.")
@click.option("--anonymize", is_flag=True,
              help="Replace client addresses (flow.client_ip) with keyed prefix-preserving "
                   "pseudonyms (Crypto-PAn): subnets stay recognisable, hosts do not. Record ids "
                   "are computed after, from the pseudonyms: stable across runs with one key.")
@click.option("--anonymize-key", type=click.Path(dir_okay=False, path_type=Path),
              metavar="FILE",
              help="The 32-byte pseudonym key (created, mode 0600, if absent; implies "
                   "--anonymize). Default: $XDG_CONFIG_HOME (or ~/.config)/tlswatch/"
                   "anonymize.key. Keep it "
                   "private: with it, pseudonyms can be tested against guesses.")
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl",
              show_default=True, help="Format of records on stdout (an -o FILE takes the "
                                      "format of its extension).")
@click.option("-v", "--verbose", is_flag=True,
              help="Print one line per record and per file on stderr.")
@click.option("--workers", type=int, metavar="N",
              help="Analyse the files on a local Dask cluster of N worker processes (127.0.0.1 "
                   "only), one task per file; needs tlswatch[distributed].")
@click.option("--scheduler", metavar="tcp://HOST:PORT",
              help="Analyse the files on an existing Dask cluster (`dask scheduler`, `dask "
                   "worker`): the workers must see the files at the same paths.")
@click.option("--routable", "routable", multiple=True, metavar="CIDR",
              help="DNS answers in this network are not bogons: private space that stands for "
                   "public addresses (a testbed; the namespace lab's 198.18.0.0/15). "
                   "Repeatable.")
@click.option("--split-size", "split_size", metavar="SIZE", default="256MB", show_default=True,
              help="With --workers/--scheduler: an uncompressed capture of SIZE or more (e.g. "
                   "64MB, 1GB; 0: never) is split into chunks analysed by several workers "
                   "(at least one chunk per worker); the records are the same.")
@click.option("--jobs", "jobs", metavar="N|auto", default="1", show_default=True,
              help="Processes per capture on this machine: each reads the file and judges "
                   "its share of the flows (captures of 4 MiB or more; smaller ones use one). "
                   "auto: one per CPU. The records are the same; their order is the order "
                   "the processes send them.")
def analyse(inputs: tuple[str, ...], stores: tuple[str, ...], registries: tuple[Path, ...],
            output: str | None, resume: bool, anonymize: bool, anonymize_key: Path | None,
            fmt: str, verbose: bool, workers: int | None = None,
            scheduler: str | None = None, keylogs: tuple[Path, ...] = (),
            split_size: str = "256MB", routable: tuple[str, ...] = (),
            jobs: str = "1") -> None:
    """Judge every TLS handshake and DNS answer in pcap/pcapng captures (also gzip, xz or
    bzip2 compressed, found by magic number, not by name) and write one tlswatch/1 record
    each (JSON Lines, source "pcap").

    TLS is found by content on any port. A cleartext chain is judged at the time of its
    handshake; TLS 1.3 chains are encrypted (cert/no_chain, "a key log is needed") unless
    --keylog or a key log embedded in the pcapng holds the session's secrets: then the
    handshake is decrypted and its chain judged (a key log that does not decrypt it is said
    so in the record's reasons).
    Blocking shows as what the wire did after the ClientHello: tls/reset (with the RST's
    TTL/IP ID and evidence of injection in tcp.rst), tls/timeout, tls/alert:NAME,
    tls/not_tls (blockpages matched), tls/eof; and tcp/timeout, tcp/refused, tcp/reset on
    TLS ports. A capture that ends too soon after an unanswered ClientHello (under 10 s)
    claims no timeout. DNS answers (UDP port 53) give records for NXDOMAIN, SERVFAIL,
    REFUSED, no address or bogon addresses only. No control exists in a capture: failures
    are anomalies, not "blocked" (a known blockpage is blocked).

    Directories are walked in sorted order; files in them that are not captures are skipped
    with a note. The output starts with a run record (kind "run") and ends with it again
    with "ended"; each capture's records are followed by an input record (kind "input":
    path, sha256, records, anomalies, complete) that --resume relies on.

    A truncated or damaged capture gives its records so far, a warning and partial: true.
    Exit status: 0 when the captures were analysed (whatever the verdicts); 2 for usage or
    input errors (a named file that is not a capture); 1 when a file failed inside
    tlswatch (reported); 130/143 when interrupted (--resume continues).

    With --workers N or --scheduler, each file is analysed by a Dask worker (a file whose
    worker dies is retried on another); records are written here, file by file in the order
    the files finish, each file's input record after its records, so --resume still works.
    A file of --split-size or more is split into chunks at packet records; each chunk owns
    the flows whose first packet lies in it (see docs/distributed.md).
    """
    err = sys.stderr
    del fmt  # the only format for now
    if output == "-":
        output = None
    out_path = Path(output) if output else None
    out_format = check_output(out_path, resume)
    if out_path is not None and not resume and not is_empty_output(out_path):
        raise InputError(f"{output} exists and is not empty: add --resume to continue it, "
                         "or choose another file")

    if workers is not None and scheduler is not None:
        raise InputError("--workers and --scheduler are mutually exclusive")
    n_jobs = parse_jobs(jobs)
    if n_jobs > 1 and (workers is not None or scheduler is not None):
        raise InputError("--jobs is for this machine; with --workers/--scheduler the cluster "
                         "shares the work")
    if workers is not None and workers < 1:
        raise InputError("--workers must be at least 1")
    distributed = workers is not None or scheduler is not None
    split_bytes = parse_size(split_size)
    capture_bogons(routable)  # a bad network is a usage error now, not in a worker
    if distributed:
        try:
            from tlswatch.distributed import cluster as dask_cluster
            from tlswatch.distributed.analyse import analyse_files as dask_analyse
            dask_cluster.require_dask()
        except ImportError:
            raise InputError("--workers/--scheduler need Dask: install tlswatch[distributed]"
                             ) from None

    progress = _FileProgress(err, live=err.isatty(), verbose=verbose)
    totals = _Totals()

    def note(msg: str) -> None:
        totals.skipped_other += 1
        progress.message(f"tlswatch: {msg}")

    for arg in inputs:
        if not os.path.exists(arg):
            raise InputError(f"{arg}: no such file or directory")
    files = list(iter_inputs(inputs, note))
    if not files:
        raise InputError("no capture among the inputs")
    for path, explicit in files:
        if explicit:
            _check_explicit(path)

    # -- engine ----------------------------------------------------------------------------
    judge, registry, store_versions = _engine(stores, tuple(registries))
    keylog: KeyLog | None = None
    if keylogs:
        # Read here too with --workers/--scheduler: a bad path fails before any work, and
        # the summary is printed once; each worker then loads the same files itself.
        keylog = KeyLog()
        for kl in keylogs:
            try:
                load_keylog(kl, keylog)
            except OSError as e:
                raise InputError(f"--keylog {kl}: cannot read ({e.strerror or e})") from None
        progress.message(f"tlswatch: key log(s): {keylog.summary()}")
        if not keylog:
            progress.message("tlswatch: warning: the key log(s) hold no session secrets")

    pseudonym: Callable[[str], str] | None = None
    kid: str | None = None
    key: bytes | None = None
    if anonymize or anonymize_key is not None:
        from tlswatch.anonymize import (
            AnonymizeKeyError,
            PrefixPreservingAnonymizer,
            load_or_create_key,
        )
        key_path = anonymize_key or default_key_path()
        created = not key_path.exists()
        try:
            key_path.parent.mkdir(parents=True, exist_ok=True)
            key = load_or_create_key(key_path)
        except AnonymizeKeyError as e:
            raise InputError(str(e)) from None
        except OSError as e:
            raise InputError(f"--anonymize-key {key_path}: {e.strerror or e}") from None
        if created:
            progress.message(f"tlswatch: created the anonymization key {key_path} (keep it "
                             "to get the same pseudonyms next time)")
        pseudonym = PrefixPreservingAnonymizer(key).anonymize
        kid = key_id(key)

    # -- output ----------------------------------------------------------------------------
    existing = _Existing()
    if out_path is not None:
        try:
            # Opening repairs what a killed run left half-written, before the scan below.
            writer: Sink = open_sink(out_path, append=resume,
                                     batch=max(_BATCH, 16) if out_format == "jsonl.gz"
                                     else _BATCH)
        except SinkError as e:
            raise InputError(str(e)) from None
        except OSError as e:
            raise InputError(f"{output}: cannot write ({e.strerror or e})") from None
        if resume:
            existing = _existing(out_path)
            if existing.key_ids and existing.key_ids != {kid}:
                writer.close()
                raise InputError(f"{output} was written with other --anonymize settings "
                                 "(key); resume with the same ones")
    else:
        writer = JsonlWriter(sys.stdout, batch=_BATCH)
    started = datetime.now(UTC)
    run_id = new_run_id(started)
    opening = run_record(
        run_id=run_id, started=started, command=[Path(sys.argv[0]).name, *sys.argv[1:]],
        rules_version=RULES_VERSION, registry_version=registry.version, stores=store_versions,
        resumed=existing.lines > 0)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise _Interrupted(signum)

    previous = None
    with contextlib.suppress(ValueError):  # not in the main thread: no handler
        previous = signal.signal(signal.SIGTERM, on_signal)
    status = 0
    t0 = time.monotonic()
    progress.t0 = t0
    progress.count = len(files)
    seen_sha: dict[str, str] = {}
    try:
        writer.write(opening)
        writer.checkpoint()
        with warnings.catch_warnings():
            # The capture layer warns through `warnings`; we print one line per warning.
            warnings.simplefilter("ignore", CaptureWarning)
            if distributed:
                options = AnalyseOptions(
                    run_id=run_id, stores=tuple(stores), registries=tuple(map(str, registries)),
                    anonymize_key=key, verbose=verbose,
                    keylogs=tuple(str(k) for k in keylogs), routable=routable)
                todo: list[tuple[Path, bool, str | None]] = []
                for path, explicit in files:
                    st, known = _precheck(path, existing=existing, progress=progress,
                                          totals=totals, resume=resume)
                    status = max(status, st)
                    if st == 0 and (known is None or known not in existing.done):
                        todo.append((path, explicit, known))
                with dask_cluster.open_client(workers=workers, scheduler=scheduler) as client:
                    for i, (path, explicit, result) in enumerate(
                            dask_analyse(client, todo, options, split_size=split_bytes), 1):
                        progress.index, progress.file = i, path.name
                        status = max(status, _write_result(
                            path, explicit, result, writer=writer, existing=existing,
                            kid=kid, progress=progress, totals=totals, seen_sha=seen_sha))
            else:
                for i, (path, explicit) in enumerate(files, 1):
                    progress.index, progress.file, progress.read = i, path.name, 0
                    status = max(status, _analyse_one(
                        path, explicit, judge=judge, writer=writer, run_id=run_id,
                        existing=existing, pseudonym=pseudonym, kid=kid, progress=progress,
                        totals=totals, seen_sha=seen_sha, resume=resume, keylog=keylog,
                        bogons=capture_bogons(routable), jobs=n_jobs))
        writer.write(closing_run_record(opening, datetime.now(UTC)))
    except (KeyboardInterrupt, _Interrupted) as e:
        progress.message("tlswatch: interrupted; run again with --resume to finish")
        status = 128 + e.signum if isinstance(e, _Interrupted) else 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as other filters do.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        progress.close()
        try:
            writer.close()
        except BrokenPipeError:
            status = status or 1
    err.write(_summary(totals, time.monotonic() - t0) + "\n")
    if status:
        sys.exit(status)


def _analyse_one(path: Path, explicit: bool, *, judge: ChainJudge, writer: Sink,
                 run_id: str, existing: _Existing, pseudonym: Callable[[str], str] | None,
                 kid: str | None, progress: _FileProgress, totals: _Totals,
                 seen_sha: dict[str, str], resume: bool, keylog: KeyLog | None = None,
                 bogons: frozenset[BogonKind] | None = None, jobs: int = 1) -> int:
    """One capture; returns the exit status it calls for (0 or 1)."""
    name = terminal_safe(str(path))
    try:
        size = path.stat().st_size
        progress.size = max(1, size)
        known = _sha256_now(path) if resume and existing.done else None
        if known is not None and known in existing.done:
            totals.skipped_done += 1
            if progress.verbose:
                progress.message(f"tlswatch: {name}: already complete in the output, skipped")
            return 0
        shared = None
        if jobs > 1:
            from tlswatch.cli import analyse_jobs  # (it builds on this module)

            if size >= analyse_jobs.MIN_SHARED_BYTES and analyse_jobs.can_share():
                shared = analyse_jobs
        if shared is not None:
            inp, note = shared.run_shared(
                path, jobs, writer=writer, existing=existing, progress=progress,
                totals=totals, seen_sha=seen_sha, known_sha=known,
                run_kwargs={"judge": judge, "run_id": run_id, "pseudonym": pseudonym,
                            "keylog": keylog, "bogons": bogons})
        else:
            run = _FileRun(path, judge=judge, writer=writer, run_id=run_id,
                           existing=existing, pseudonym=pseudonym, progress=progress,
                           totals=totals, seen_sha=seen_sha, known_sha=known, keylog=keylog,
                           bogons=bogons)
            inp = run.run()
            note = run.note
    except _Duplicate as e:
        totals.skipped_other += 1
        progress.message(f"tlswatch: {name}: same content as {terminal_safe(str(e))}, skipped")
        return 0
    except CaptureFormatError as e:
        if explicit:
            progress.message(f"tlswatch: error: {terminal_safe(str(e))}")
            totals.errors += 1
            return 1
        totals.skipped_other += 1
        progress.message(f"tlswatch: {terminal_safe(str(e))}; skipped")
        return 0
    except OSError as e:
        totals.errors += 1
        progress.message(f"tlswatch: error: {name}: cannot read ({e.strerror or e})")
        return 1
    except (KeyboardInterrupt, _Interrupted, BrokenPipeError):
        raise
    except Exception as e:  # a bug of ours: report it, keep the other files going
        totals.errors += 1
        progress.message(f"tlswatch: internal error on {name}: {type(e).__name__}: "
                         f"{terminal_safe(str(e), 200)}")
        return 1
    if kid is not None:
        inp = replace(inp, anonymize_key_id=kid)
    writer.write(to_dict(inp))  # a plain dict: every record sink takes one
    writer.checkpoint()
    _file_done(inp, name, note, totals=totals, progress=progress)
    return 0



def _file_done(inp: InputRecord, name: str, note: str | None, *, totals: _Totals,
               progress: _FileProgress) -> None:
    """Count a finished file and say what the user should know about it (both paths)."""
    totals.files += 1
    totals.bytes += inp.size
    progress.bytes_before += inp.size
    if inp.partial:
        totals.partial += 1
    for w in inp.warnings:
        kind = "note" if w == note else "warning"
        progress.message(f"tlswatch: {kind}: {terminal_safe(w, 300)}")
    if progress.verbose:
        n_anom = sum(inp.anomalies.values())
        progress.message(f"tlswatch: {name}: {inp.packets:,} packets, {inp.flows:,} flows, "
                         f"{inp.handshakes:,} handshakes, {inp.records:,} records, {n_anom:,} "
                         f"anomalies, sha256 {inp.sha256[:16]}…")


# -- the per-file work as a plain function (in this process or in a Dask worker) ------------


@dataclass(frozen=True, slots=True)
class AnalyseOptions:
    """What :func:`analyse_file` needs besides the path: plain, picklable values (a Dask
    worker rebuilds the judge from them, once per process)."""

    run_id: str
    stores: tuple[str, ...] = ()  # --store specs; () is auto
    registries: tuple[str, ...] = ()  # --registry paths
    anonymize_key: bytes | None = None  # the Crypto-PAn key itself (not its path)
    verbose: bool = False  # also return one -v line per record
    keylogs: tuple[str, ...] = ()  # --keylog paths (workers must see them at these paths)
    routable: tuple[str, ...] = ()  # --routable networks (answers there are not bogons)


@dataclass(slots=True)
class FileResult:
    """One capture's outcome: its records (``record_dict`` form, in the order found), its
    input record (``records`` counts them; no key id yet), the figures for the summary, or
    the error that stopped it (``error_kind``: "format", "os" or "internal")."""

    path: str
    records: list[EncodedRecord] = field(default_factory=list)
    input: InputRecord | None = None
    totals: _Totals = field(default_factory=_Totals)
    note: str | None = None
    lines: list[str] = field(default_factory=list)
    error_kind: str | None = None
    error: str | None = None


class _Collect:
    """A writer that keeps what it is given (a worker sends it back; it never writes)."""

    def __init__(self) -> None:
        self.items: list[EncodedRecord] = []

    def write(self, record: Record | dict[str, Any]) -> None:
        self.items.append(EncodedRecord.of(record))


class _CollectProgress(_FileProgress):
    def __init__(self, *, verbose: bool) -> None:
        super().__init__(sys.stderr, live=False, verbose=False)
        self.keep_lines = verbose
        self.lines: list[str] = []

    def record(self, rec: Record) -> None:
        self.done += 1
        if self.keep_lines:
            self.lines.append(verbose_line(rec))


def _engine(stores: tuple[str, ...], registries: tuple[Path | str, ...]
            ) -> tuple[ChainJudge, Any, list[tuple[str, str]]]:
    """The judge for --store/--registry, the registry and the stores' (name, version)."""
    try:
        registry = load_registry([Path(r) for r in registries])
    except RegistryError as e:
        raise InputError(str(e)) from None
    specs = stores or ("auto",)
    try:
        if specs == ("auto",):
            store_list = None
            store_versions = [(s.name, s.version) for s in map(load_store, AUTO_CANDIDATES)]
        elif "auto" in specs:
            raise InputError("--store auto cannot be combined with other stores")
        else:
            loaded = load_stores(specs)
            store_list = loaded
            store_versions = [(s.name, s.version) for s in loaded]
    except StoreError as e:
        raise InputError(str(e)) from None
    return ChainJudge(store_list, registry), registry, store_versions


_ENGINES: dict[tuple[tuple[str, ...], tuple[str, ...], bytes | None, tuple[str, ...]],
               tuple[ChainJudge, Callable[[str], str] | None, KeyLog | None]] = {}
_ENGINES_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def capture_bogons(routable: tuple[str, ...]) -> frozenset[BogonKind] | None:
    """The bogon policy of ``--routable`` networks (None: the default), built once."""
    try:
        return routable_policy(DEFAULT_BOGONS, routable) if routable else None
    except ValueError as e:
        raise InputError(str(e)) from None


def _worker_engine(options: AnalyseOptions
                   ) -> tuple[ChainJudge, Callable[[str], str] | None, KeyLog | None]:
    """The judge, pseudonym function and key log for ``options``, built once per process
    (a worker analyses many files: its chain-judgement cache stays warm)."""
    k = (options.stores, options.registries, options.anonymize_key, options.keylogs)
    with _ENGINES_LOCK:
        hit = _ENGINES.get(k)
        if hit is None:
            judge = _engine(options.stores, options.registries)[0]
            pseudonym: Callable[[str], str] | None = None
            if options.anonymize_key is not None:
                from tlswatch.anonymize import PrefixPreservingAnonymizer

                pseudonym = PrefixPreservingAnonymizer(options.anonymize_key).anonymize
            keylog: KeyLog | None = None
            if options.keylogs:
                keylog = KeyLog()
                for path in options.keylogs:
                    load_keylog(Path(path), keylog)
            hit = _ENGINES[k] = (judge, pseudonym, keylog)
        return hit


def analyse_file(path: str | Path, options: AnalyseOptions, known_sha: str | None = None
                 ) -> FileResult:
    """Analyse one capture and return its records instead of writing them: the task a Dask
    worker runs (nothing here writes, so a task retried after a worker died duplicates
    nothing). Errors come back in the result, not as exceptions (retrying them is useless)."""
    p = Path(path)
    result = FileResult(path=str(path))
    judge, pseudonym, keylog = _worker_engine(options)
    sink = _Collect()
    progress = _CollectProgress(verbose=options.verbose)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CaptureWarning)
            run = _FileRun(p, judge=judge, writer=sink, run_id=options.run_id,
                           existing=_Existing(), pseudonym=pseudonym, progress=progress,
                           totals=result.totals, seen_sha={}, known_sha=known_sha,
                           keylog=keylog, bogons=capture_bogons(options.routable))
            result.input = run.run()
    except Exception as e:  # reported by the client; the other files go on
        result.error_kind, result.error = task_error(e)
        return result
    result.records = sink.items
    result.note = run.note
    result.lines = progress.lines
    return result


def _precheck(path: Path, *, existing: _Existing, progress: _FileProgress, totals: _Totals,
              resume: bool) -> tuple[int, str | None]:
    """Before submitting a file: (status, its hash when --resume needs it); a file already
    complete in the output is counted and noted here."""
    try:
        known = _sha256_now(path) if resume and existing.done else None
    except OSError as e:
        totals.errors += 1
        progress.message(f"tlswatch: error: {terminal_safe(str(path))}: cannot read "
                         f"({e.strerror or e})")
        return 1, None
    if known is not None and known in existing.done:
        totals.skipped_done += 1
        if progress.verbose:
            progress.message(f"tlswatch: {terminal_safe(str(path))}: already complete in the "
                             "output, skipped")
    return 0, known


def write_encoded(records: list[EncodedRecord], lines: list[str], *, writer: _Writer,
                  existing: _Existing, progress: _FileProgress, totals: _Totals) -> int:
    """Write records judged by another process (skipping those already in the output),
    count them and say them (-v: ``lines`` are their verbose lines); how many were written."""
    written = 0
    for i, rec in enumerate(records):
        if rec.id in existing.ids:
            totals.already += 1
            continue
        writer.write(rec)
        written += 1
        totals.records += 1
        totals.verdicts[rec.verdict] += 1
        totals.outcomes[outcome_class(rec.outcome)] += 1
        progress.done += 1
        progress.counts[rec.verdict] += 1
        if progress.verbose and i < len(lines):
            progress.message(lines[i])
    return written


def _write_result(path: Path, explicit: bool, result: FileResult, *, writer: Sink,
                  existing: _Existing, kid: str | None, progress: _FileProgress,
                  totals: _Totals, seen_sha: dict[str, str]) -> int:
    """Write one file's result (from a worker): its records, then its input record, as
    :func:`_analyse_one` does; returns the exit status it calls for (0 or 1)."""
    name = terminal_safe(str(path))
    if result.error_kind == "format":
        msg = terminal_safe(result.error or "")
        if explicit:
            progress.message(f"tlswatch: error: {msg}")
            totals.errors += 1
            return 1
        totals.skipped_other += 1
        progress.message(f"tlswatch: {msg}; skipped")
        return 0
    if result.error_kind == "os":
        totals.errors += 1
        progress.message(f"tlswatch: error: {name}: cannot read ({result.error})")
        return 1
    inp = result.input
    if result.error_kind is not None or inp is None:
        totals.errors += 1
        progress.message(f"tlswatch: internal error on {name}: "
                         f"{terminal_safe(result.error or 'no result', 200)}")
        return 1
    if inp.sha256 in seen_sha:
        totals.skipped_other += 1
        progress.message(f"tlswatch: {name}: same content as "
                         f"{terminal_safe(seen_sha[inp.sha256])}, skipped")
        return 0
    seen_sha[inp.sha256] = str(path)
    written = write_encoded(result.records, result.lines, writer=writer, existing=existing,
                            progress=progress, totals=totals)
    inp = replace(inp, records=written, anonymize_key_id=kid)
    writer.write(to_dict(inp))
    writer.checkpoint()
    totals.packets += result.totals.packets
    totals.add_figures(result.totals)
    _file_done(inp, name, result.note, totals=totals, progress=progress)
    return 0
