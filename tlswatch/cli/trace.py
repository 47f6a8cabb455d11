"""``tlswatch trace``: locate the hop where interception or injection starts (TTL-limited
ClientHellos for a target SNI and a control SNI to the same address)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from tlswatch.classify.chain import ChainJudge
from tlswatch.cli.errors import InputError
from tlswatch.sinks.base import EncodedRecord
from tlswatch.sinks.jsonl import JsonlWriter
from tlswatch.textsafe import terminal_safe
from tlswatch.trace.hops import TraceConfig
from tlswatch.trace.rawwatch import RawSocketDenied
from tlswatch.trace.record import ProbeSummary, TraceRecord, record_line
from tlswatch.trace.run import trace as run_trace
from tlswatch.x509.registry import RegistryError, load_registry
from tlswatch.x509.stores import StoreError, TrustStore, load_stores

__all__ = ["parse_target", "trace"]


def parse_target(text: str) -> tuple[str, int | None]:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT``, ``NAME`` or ``NAME:PORT`` -> (host, port)."""
    host, port_text = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise InputError(f"TARGET {text!r}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise InputError(f"TARGET {text!r}: expected :PORT after ']'")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise InputError(f"TARGET {text!r}: port must be 1-65535")
        port = int(port_text)
    if not host:
        raise InputError(f"TARGET {text!r}: no address or name")
    return host, port


def _resolve(host: str) -> tuple[str, str | None, tuple[str, ...]]:
    """(ip, domain or None, all answers). A name is resolved once, by the system resolver."""
    try:
        return str(ipaddress.ip_address(host)), None, ()
    except ValueError:
        pass
    try:
        _check_name("TARGET", host)
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise InputError(f"TARGET {host!r} does not resolve ({e})") from None
    answers = tuple(dict.fromkeys(str(i[4][0]) for i in infos))
    v4 = [a for a in answers if ":" not in a]
    return (v4 or list(answers))[0], host, answers


def _check_name(option: str, name: str) -> None:
    try:
        encoded = name.encode("idna")  # what the TLS client sends
    except UnicodeError:
        raise InputError(f"{option} {name!r} is not a valid host name") from None
    if not encoded or len(encoded) > 253 or not all(33 <= b < 127 for b in encoded):
        raise InputError(f"{option} {name!r} is not a valid host name")


def _judge(specs: tuple[str, ...], registries: tuple[Path, ...]) -> ChainJudge:
    try:
        stores: list[TrustStore] | None = (
            None if not specs or specs == ("auto",) else load_stores(specs, at=datetime.now(UTC)))
        registry = load_registry(registries)
    except (StoreError, RegistryError) as e:
        raise InputError(str(e)) from None
    return ChainJudge(stores, registry)


def _cell(p: ProbeSummary | None) -> str:
    if p is None:
        return "-"
    text = p.response
    if p.response == "rst" and p.rst_ttl is not None:
        text += f" ttl={p.rst_ttl}"
    if p.response == "server_hello" and p.outcome:
        text += f" {p.outcome}"
    return terminal_safe(text, 48)


def table(rec: TraceRecord) -> str:
    """The short human view: hop, router, target-SNI response, control-SNI response."""
    rows = [("hop", "router", f"target {rec.target.sni}",
             f"control {rec.target.control_sni or '-'}")]
    for h in rec.hops:
        mark = " <" if h.ttl == rec.located_hop else ""
        rows.append((f"{h.ttl}{mark}", terminal_safe(h.router, 40), _cell(h.target),
                     _cell(h.control)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
             for r in rows]
    where = (f"hop {rec.located_hop}" + (f" ({rec.located_router})" if rec.located_router
                                         else "")) if rec.located_hop else "no hop"
    lines.append(f"{rec.kind}: {where}; verdict {rec.verdict} ({rec.outcome}); "
                 f"server answers from hop {rec.server_hop or '-'}, "
                 f"TCP terminates at hop {rec.tcp_hop or '-'}")
    return "\n".join(lines)


@click.command()
@click.argument("target", metavar="TARGET")
@click.option("--sni", required=True, metavar="NAME",
              help="The SNI to test (e.g. a site suspected to be intercepted or blocked).")
@click.option("--control-sni", metavar="NAME",
              help="An innocuous SNI sent to the same address, to compare with (e.g. "
                   "example.org). Without it only interception can be located.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="TCP port (default: the one in TARGET, else 443).")
@click.option("--max-ttl", type=click.IntRange(1, 64), default=30, show_default=True,
              help="Highest TTL probed.")
@click.option("--timeout", type=click.FloatRange(0.05, 60), default=2.0, show_default=True,
              metavar="SECONDS", help="Wait per TTL-limited probe (and per TCP connect).")
@click.option("--pause", type=click.FloatRange(0, 600), default=0.0, show_default=True,
              metavar="SECONDS",
              help="Wait between probes. Some censors keep blocking a server for minutes after "
                   "one forbidden SNI (residual censorship): without a pause, later TTLs and the "
                   "control may be answered for an earlier probe.")
@click.option("--repeats", type=click.IntRange(1, 10), default=1, show_default=True,
              metavar="N", help="Probes per TTL and SNI; the most common answer represents "
                                "the hop (counts are recorded).")
@click.option("--syn/--no-syn", default=True, show_default=True,
              help="Also send TTL-limited SYNs: the TTL at which the TCP handshake completes "
                   "(a transparent proxy terminates TCP at its own hop).")
@click.option("--store", "stores", multiple=True, metavar="NAME|PATH|all|auto",
              help="Trust store(s) to judge chains against (repeatable). Default: auto, the "
                   "Mozilla snapshot nearest before now.")
@click.option("--registry", "registries", multiple=True, type=click.Path(path_type=Path),
              metavar="FILE", help="Extra interception-CA registry (JSON or PEM), repeatable.")
@click.option("-o", "--output", metavar="FILE",
              help="Append the record (one JSON line) to FILE instead of writing to stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Log every probe on stderr.")
def trace(target: str, sni: str, control_sni: str | None, port: int | None, max_ttl: int,
          timeout: float, pause: float, repeats: int, syn: bool, stores: tuple[str, ...],
          registries: tuple[Path, ...], output: str | None, verbose: bool) -> None:
    """Find the hop at which interception or injection starts, with TTL-limited ClientHellos.

    For TTL = 1, 2, ... a TCP connection to TARGET (IP[:PORT] or a name, resolved once) is
    made with the normal TTL, then a real ClientHello is sent with its TTL limited to that
    many hops: routers answer ICMP time exceeded (naming the hop), a box or the server
    answers TLS, a RST, an alert, or nothing. The control SNI is traced first, then the
    target SNI. The located hop is the first TTL at which the target's answer is judged
    interference (intercepted chain, injected RST/alert, drop) while the control's is not.

    Writes one tlswatch-trace/1 record (JSON line, docs/trace.md) to stdout or -o FILE and a
    table on stderr. Needs root or CAP_NET_RAW (raw sockets). TTL-limited probes cross and
    expire at third-party routers: trace only paths you may measure. Exit status: 0 when
    the trace ran (whatever it found), 2 for usage errors or missing privileges.
    """
    host, target_port = parse_target(target)
    the_port = port or target_port or 443
    _check_name("--sni", sni)
    if control_sni is not None:
        _check_name("--control-sni", control_sni)
    judge = _judge(stores, registries)
    ip, domain, answers = _resolve(host)
    to_file = output is not None and output != "-"
    if to_file:
        assert output is not None
        try:  # fail before tracing, not after
            Path(output).open("a", encoding="utf-8").close()
        except OSError as e:
            raise InputError(f"-o {output}: cannot write ({e.strerror or e})") from None
    err = sys.stderr

    def log(message: str) -> None:
        if verbose:
            err.write(terminal_safe(message) + "\n")
            err.flush()

    cfg = TraceConfig(ip=ip, port=the_port, sni=sni, control_sni=control_sni, max_ttl=max_ttl,
                      timeout=timeout, repeats=repeats, syn=syn, pause=pause)
    try:
        rec = asyncio.run(run_trace(cfg, judge, domain=domain, resolved=answers, log=log))
    except RawSocketDenied as e:
        raise InputError("tlswatch trace needs root or CAP_NET_RAW for its raw ICMP/TCP "
                         f"sockets ({e.strerror or e})") from None
    line = record_line(rec)
    if to_file:
        assert output is not None
        # The crash-safe appender every tlswatch output goes through (a torn tail is cut).
        with JsonlWriter(Path(output), batch=1) as sink:
            sink.write(EncodedRecord(rec.id, rec.verdict, rec.outcome, line))  # as it is
            sink.checkpoint()
    else:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    err.write(table(rec) + "\n")
