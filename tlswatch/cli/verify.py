"""``tlswatch verify``: judge a certificate chain from a file for a name at a time."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from cryptography.hazmat.primitives.serialization import Encoding

from tlswatch.classify.chain import ChainJudge, ChainJudgement, compare_with_control, decide
from tlswatch.classify.record import chain_record
from tlswatch.cli.errors import InputError
from tlswatch.ids import new_run_id, record_id
from tlswatch.model import Record, Target, Vantage, to_dict
from tlswatch.textsafe import terminal_safe
from tlswatch.x509.pem import CertificateInputError, load_certificates
from tlswatch.x509.registry import RegistryError, load_registry
from tlswatch.x509.stores import StoreError, TrustStore, load_stores

__all__ = ["parse_time", "verify"]

MAX_INPUT_BYTES = 16 * 1024 * 1024


def parse_time(value: str) -> datetime:
    """ISO-8601; a time without a zone is taken as UTC; a bare date means midnight UTC."""
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--at {value!r}: not an ISO-8601 time (e.g. 2019-08-01T12:00:00Z)") \
            from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _read_chain(path: str) -> list[bytes]:
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_INPUT_BYTES + 1)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{path}: larger than {MAX_INPUT_BYTES} bytes: not a certificate chain")
    try:
        certs = load_certificates(data, source=path, max_certs=100)
        return [c.public_bytes(Encoding.DER) for c in certs]
    except CertificateInputError as e:
        raise InputError(str(e)) from None


def _render_text(rec: Record, judgement: ChainJudgement) -> str:
    s = terminal_safe
    lines = [
        f"verdict      {rec.verdict} (confidence {rec.confidence:.2f}, rule {rec.rule_id})",
        f"outcome      {s(rec.outcome)}",
        f"host         {s(rec.target.domain)}   at {rec.time}",
    ]
    i = rec.interception
    if i and i.matched:
        lines.append(f"interception {s(i.label or 'unnamed')} (incident {s(i.incident or '-')}), "
                     f"evidence {i.evidence}")
    if i and i.pattern and (i.matched or len(i.pattern) >= 4):
        lines.append(f"forgery traits  {', '.join(i.pattern)}")
    lines.append("chain (as presented, leaf first)")
    for n, c in enumerate(judgement.chain):
        lines.append(f"  [{n}] {s(c.subject, 120)}")
        lines.append(f"      issuer {s(c.issuer, 120)}")
        if c.parse_error:
            lines.append(f"      unparseable: {s(c.parse_error)}")
        key = c.key
        key_text = "-" if key is None else (
            f"{key.type}-{key.bits}" + (f" e={key.exponent}" if key.exponent else "")
            + (f" {key.curve}" if key.curve else ""))
        lines.append(f"      key {key_text}  valid {c.not_before} .. {c.not_after}")
        lines.append(f"      sha256 {c.sha256}" + ("  self-signed" if c.self_signed else ""))
    lines.append("validation")
    for v in rec.validation:
        state = "trusted" if v.trusted else (v.error or "untrusted")
        anchor = f"  anchor {s(v.anchor_subject, 100)}" if v.anchor_subject else ""
        host_ok = {True: "  hostname ok", False: "  hostname mismatch", None: ""}[v.hostname_ok]
        lines.append(f"  {v.store} ({s(v.store_version, 60)})  {state}{anchor}{host_ok}")
    if rec.control:
        lines.append(f"control      {rec.control.kind}: {s(rec.control.outcome)}")
    lines.append("reasons")
    lines.extend(f"  - {s(r)}" for r in rec.reasons)
    lines.extend(f"  ! {s(a)}" for a in rec.anomalies)
    return "\n".join(lines)


@click.command()
@click.argument("chain", metavar="CHAIN.pem")
@click.option("--host", help="The name the client asked for (SNI). Without it, no name check.")
@click.option("--at", "at_text", metavar="ISO-8601",
              help="Judge at this time (default: now). Zone-less times are UTC.")
@click.option("--store", "stores", multiple=True, metavar="NAME|PATH|all|auto",
              help="Trust store(s) to validate against (repeatable). Default: auto, the "
                   "Mozilla snapshot nearest before the time judged.")
@click.option("--registry", "registries", multiple=True, type=click.Path(path_type=Path),
              help="Extra interception-CA registry file (JSON or PEM), repeatable.")
@click.option("--control", "control_path", metavar="CHAIN.pem",
              help="The chain a control measurement saw for the same name.")
@click.option("--control-kind", type=click.Choice(["path", "sni", "resolver"]), default="path",
              show_default=True, help="How the control chain was measured.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="How the result prints on stdout; json is one "
                                      "tlswatch/1 record.")
def verify(chain: str, host: str | None, at_text: str | None, stores: tuple[str, ...],
           registries: tuple[Path, ...], control_path: str | None, control_kind: str,
           fmt: str) -> None:
    """Judge the certificate chain in CHAIN.pem (PEM or DER, leaf first; - for stdin).

    Exit status 0 for any verdict; 2 with a one-line error for unreadable input.
    """
    at = parse_time(at_text) if at_text else datetime.now(UTC)
    ders = _read_chain(chain)
    control_ders = _read_chain(control_path) if control_path else None
    try:
        store_list: list[TrustStore] | None = (
            None if not stores or stores == ("auto",) else load_stores(stores, at=at))
        registry = load_registry(registries)
    except (StoreError, RegistryError) as e:
        raise InputError(str(e)) from None

    judge = ChainJudge(store_list, registry)
    judgement = judge.judge(ders, host=host, at=at)
    control_view = control_j = None
    if control_ders is not None:
        control_j = judge.judge(control_ders, host=host, at=at)
        control_view = compare_with_control(judgement, control_j, control_kind)
    decision = decide(judgement, control_view)
    target = Target(domain=host, sni=host, ip=None, port=443)
    rec = chain_record(
        record_id=record_id(source="file", target=target, extra=",".join(
            c.sha256 for c in judgement.chain) + "@" + at.isoformat()),
        run_id=new_run_id(datetime.now(UTC)), source="file", at=at, target=target,
        judgement=judgement, decision=decision, vantage=Vantage(name="file", kind="file"),
        control=control_view, control_judgement=control_j)
    if fmt == "json":
        click.echo(json.dumps(to_dict(rec), ensure_ascii=True))
    else:
        click.echo(_render_text(rec, judgement))

