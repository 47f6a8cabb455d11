"""``tlswatch ooni``: judge the TLS handshakes of OONI measurements into tlswatch/1 records."""

from __future__ import annotations

import dataclasses
import sys
import zlib
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import click

from tlswatch.classify.chain import ChainJudge
from tlswatch.classify.rules import RULES_VERSION
from tlswatch.cli.errors import InputError
from tlswatch.ids import new_run_id
from tlswatch.ooni import (
    MeasurementError,
    OoniConverter,
    open_measurements,
    parse_measurement,
    read_measurements,
)
from tlswatch.probe.runrecord import closing_run_record, run_record
from tlswatch.sinks.jsonl import JsonlWriter
from tlswatch.textsafe import terminal_safe
from tlswatch.x509.registry import RegistryError, load_registry
from tlswatch.x509.stores import AUTO_CANDIDATES, StoreError, TrustStore, load_store, load_stores

__all__ = ["ooni"]

_MAX_LINE_MESSAGES = 20  # per run: enough to see what is wrong without flooding stderr


def _stores(specs: tuple[str, ...]) -> tuple[list[TrustStore] | None, list[tuple[str, str]]]:
    try:
        if not specs or specs == ("auto",):
            auto = [load_store(n) for n in AUTO_CANDIDATES]
            return None, [(s.name, s.version) for s in auto]
        if "auto" in specs:
            raise InputError("--store auto picks a snapshot per measurement: give it alone")
        stores = load_stores(specs)
    except StoreError as e:
        raise InputError(str(e)) from None
    return stores, [(s.name, s.version) for s in stores]


@click.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("-o", "--output", metavar="FILE",
              help="Write records to FILE (.jsonl) instead of stdout. Refuses a non-empty "
                   "FILE (the ids are deterministic: convert again into a new file).")
@click.option("--store", "stores", multiple=True, metavar="NAME|PATH|all|auto",
              help="Trust store(s) to judge chains against (repeatable). Default: auto, the "
                   "Mozilla snapshot nearest before each handshake's time.")
@click.option("--registry", "registries", multiple=True, type=click.Path(path_type=Path),
              metavar="FILE", help="Extra interception-CA registry (JSON or PEM), repeatable.")
def ooni(files: tuple[str, ...], output: str | None, stores: tuple[str, ...],
         registries: tuple[Path, ...]) -> None:
    """Judge the TLS handshakes in OONI measurement files (JSON Lines, one measurement per
    line; .gz read as gzip) and write one tlswatch/1 record per handshake.

    Reads web_connectivity, urlgetter, tlsping, sni_blocking and tlsmiddlebox (and any
    test whose test_keys carry tls_handshakes[]). Each chain in peer_certificates is judged
    at the time of its handshake (measurement_start_time + t); sni_blocking and
    tlsmiddlebox handshakes with the control SNI serve as the control. OONI failure strings
    become tlswatch outcomes (connection_reset during the handshake: tls/reset; see
    docs/report.md). Records carry source "ooni", the vantage "CC ASN", and an "ooni"
    object pointing back to the measurement (report_id, input, place in test_keys).

    Malformed lines are reported on stderr as FILE:LINE: message, counted and skipped.
    Exit status 0 when the files were read (whatever the verdicts); 2 with a one-line
    error for an unreadable file or bad options.
    """
    paths = [Path(f) for f in files]
    for p in paths:
        try:
            with open(p, "rb"):
                pass
        except OSError as e:
            raise InputError(f"{p}: cannot read ({e.strerror or e})") from None
    out_path = Path(output) if output and output != "-" else None
    if out_path is not None:
        if not out_path.name.endswith(".jsonl"):
            raise InputError(f"-o {output}: only .jsonl output for now")
        if out_path.exists() and out_path.stat().st_size > 0:
            raise InputError(f"{output} exists and is not empty: choose another file")
    store_list, store_versions = _stores(stores)
    try:
        registry = load_registry(registries)
    except RegistryError as e:
        raise InputError(str(e)) from None
    if out_path is not None:
        try:
            writer = JsonlWriter(out_path, batch=256)
        except OSError as e:
            raise InputError(f"{output}: cannot write ({e.strerror or e})") from None
    else:
        writer = JsonlWriter(sys.stdout, batch=256)

    started = datetime.now(UTC)
    run_id = new_run_id(started)
    opening = run_record(run_id=run_id, started=started,
                         command=[Path(sys.argv[0]).name, *sys.argv[1:]],
                         rules_version=RULES_VERSION, registry_version=registry.version,
                         stores=store_versions)
    converter = OoniConverter(ChainJudge(store_list, registry), run_id)
    measurements = bad = 0
    verdicts: Counter[str] = Counter()
    err = click.get_text_stream("stderr")
    try:
        writer.write(opening)
        for path in paths:
            try:
                with open_measurements(path) as lines:
                    for lineno, obj in read_measurements(lines):
                        try:
                            if isinstance(obj, str):
                                raise MeasurementError(obj)
                            measurement = parse_measurement(obj)
                        except MeasurementError as e:
                            bad += 1
                            if bad <= _MAX_LINE_MESSAGES:
                                err.write(f"{terminal_safe(str(path))}:{lineno}: "
                                          f"{terminal_safe(str(e))}: skipped\n")
                            continue
                        measurements += 1
                        for rec in converter.convert(measurement):
                            verdicts[rec.record.verdict] += 1
                            writer.write(rec.to_json())
            except (OSError, EOFError, zlib.error) as e:
                # A file that breaks mid-way (a truncated .gz): what was written stays valid.
                raise InputError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") \
                    from None
        # The closing run record names the stores actually used (auto picks per handshake).
        used = tuple(sorted(converter.stores_used.items())) or opening.stores
        writer.write(closing_run_record(dataclasses.replace(opening, stores=used),
                                        datetime.now(UTC)))
    finally:
        writer.close()
    if bad > _MAX_LINE_MESSAGES:
        err.write(f"tlswatch: … {bad - _MAX_LINE_MESSAGES} more malformed lines\n")
    counts = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) or "none"
    err.write(f"tlswatch: {measurements} measurements, {sum(verdicts.values())} records "
              f"({counts}), {bad} malformed lines skipped\n")

