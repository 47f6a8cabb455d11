"""``tlswatch analyse`` on a Dask cluster: many capture files, 1 process worker against 2.

Workload, built in a temp dir (never committed): one capture made by
``benchmarks/analyse_throughput.py``'s builder (TLS 1.2 handshakes with application data,
injected RST / alert, blockpages, DNS tampering, plain HTTP bulk), copied N times with a
different ``sigfigs`` field in the pcap header (an unused field: every copy has its own SHA-256,
so none is skipped as a duplicate, and the same packets).

Measured, each ``tlswatch analyse`` in its own process, files in the page cache:

* the single-process run (no Dask), for reference;
* ``--scheduler`` to a ``LocalCluster`` of 1, then 2, process workers (one thread each,
  127.0.0.1) started by this script and warmed by one run first (each worker has loaded its
  trust store and judge): the time tlswatch reports for the analysis (its summary line) and
  the command's wall time;
* ``--workers 1`` / ``--workers 2``: the whole command, cluster start-up included.

One large file (the same bytes as the many files, built as one capture by the same builder)
is then analysed by one process and by 2 workers with ``--split-size`` (2 chunks): the index
pass (SHA-256 and record offsets) and each chunk's look-back (130 s of capture time before it)
and read-on (until its flows are settled) are included. The builder writes 10k packets/s, so
the whole file spans well under the 130 s look-back: the second chunk re-reads all of the
first one (cheaply). The same file with its packet times stretched 20x (500 packets/s, a
few minutes of traffic) shows the ratio when chunks are longer than the look-back.

    python benchmarks/distributed_analyse.py          # full run; output: distributed_analyse.out
    python benchmarks/distributed_analyse.py --smoke    # seconds-long run used by the test suite
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "captures" / "lab-public-root.pem"
BUILDER = ROOT / "benchmarks" / "analyse_throughput.py"
ANALYSE = [sys.executable, "-c", "from tlswatch.cli.analyse import analyse; "
           "analyse.main(prog_name='tlswatch analyse')"]


def build(tmp: Path, count: int, size: int) -> list[Path]:
    first = tmp / "template.pcap"
    subprocess.run([sys.executable, str(BUILDER), "--build", str(first), str(size), "20"],
                   capture_output=True, text=True, check=True)
    data = bytearray(first.read_bytes())
    assert data[:4] == bytes.fromhex("d4c3b2a1"), "little-endian pcap expected"
    files = []
    for i in range(count):
        data[12:16] = (i + 1).to_bytes(4, "little")  # sigfigs: unused, makes the hash unique
        p = tmp / "files" / f"capture-{i:03d}.pcap"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        files.append(p)
    first.unlink()
    return files


def analyse(files_dir: Path, out: Path, *extra: str) -> tuple[float, float, int]:
    """(wall s, analysis s as tlswatch reports it, records) of one run."""
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    r = subprocess.run([*ANALYSE, str(files_dir), "--store", str(STORE), "-o", str(out),
                        *extra], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode:
        sys.exit(f"tlswatch analyse failed ({r.returncode}):\n{r.stderr}")
    m = re.search(r"^(\d+) records .* in ([\d.]+) s", r.stderr, re.M)
    assert m, r.stderr
    return wall, float(m.group(2)), int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny workload (CI)")
    args = ap.parse_args()
    count, size = (6, 1 << 20) if args.smoke else (40, 5 << 20)
    import dask
    from distributed import LocalCluster

    # As `tlswatch analyse --workers` does, and as docs/distributed.md advises for `dask
    # worker`: no statistical profiler sampling every worker thread each 10 ms.
    dask.config.set({"distributed.worker.profile.enabled": False})

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        files = build(tmp, count, size)
        total = sum(p.stat().st_size for p in files)
        for p in files:
            p.read_bytes()  # page cache
        print(f"workload: {'smoke' if args.smoke else 'full'} run; {count} capture files of "
              f"{files[0].stat().st_size / 1e6:.1f} MB ({total / 1e6:.0f} MB) built by "
              "analyse_throughput.py's builder; judged against captures/lab-public-root.pem; "
              "one task per file")
        out = tmp / "out.jsonl"
        wall, took, recs = analyse(files[0].parent, out)
        print(f"\nsingle process (no Dask)           {took:6.2f} s analysis  {wall:6.2f} s wall"
              f"  {recs:,} records")
        seen: dict[int, float] = {}
        for n in (1, 2):
            with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address=None) as cluster:
                addr = cluster.scheduler_address
                analyse(files[0].parent, out, "--scheduler", addr)  # warm the workers
                # The median of 3: one run on this shared VM swings by 15%.
                runs = sorted(analyse(files[0].parent, out, "--scheduler", addr)
                              for _ in range(1 if args.smoke else 3))
                wall, took, r = sorted(runs, key=lambda x: x[1])[len(runs) // 2]
            assert all(x[2] == recs for x in runs), (runs, recs)
            seen[n] = took
            print(f"--scheduler, {n} process worker{'s' if n > 1 else ' '}     {took:6.2f} s "
                  f"analysis  {wall:6.2f} s wall  {r:,} records  {total / 1e6 / took:,.0f} MB/s"
                  f"  (median of {', '.join(f'{x[1]:.2f}' for x in runs)} s)")
        e2e: dict[int, float] = {}
        for n in (1, 2):
            wall, took, r = analyse(files[0].parent, out, "--workers", str(n))
            assert r == recs, (r, recs)
            e2e[n] = wall
            print(f"--workers {n} (cluster start-up in)  {took:6.2f} s analysis  {wall:6.2f} s "
                  "wall")
        print(f"\nratio 1 worker / 2 workers: {seen[1] / seen[2]:.2f}x analysis (warm cluster), "
              f"{e2e[1] / e2e[2]:.2f}x wall with --workers (cold start); target 1.6x")
        for f in files:
            f.unlink()
        big = build_large(tmp, total)
        stretched = stretch(big, tmp / "large" / "stretched.pcap", 20)
        big_ratio = {}
        for name, path in (("dense (10k packets/s)", big), ("stretched 20x", stretched)):
            path.read_bytes()
            wall, one, recs1 = analyse(path, out)
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                              host="127.0.0.1", dashboard_address=None) as cluster:
                addr = cluster.scheduler_address
                split = ("--split-size", f"{path.stat().st_size // 2 + 1}B")
                analyse(path, out, "--scheduler", addr, *split)  # warm the workers
                wall2, two, recs2 = analyse(path, out, "--scheduler", addr, *split)
            assert recs1 == recs2, (recs1, recs2)
            big_ratio[name] = one / two
            print(f"\none large file, {name}: {path.stat().st_size / 1e6:.0f} MB, {recs1:,} "
                  f"records\n  single process {one:6.2f} s analysis   2 workers, 2 chunks "
                  f"{two:6.2f} s analysis ({wall2:.2f} s wall)   ratio {one / two:.2f}x")
        print(json.dumps({"files": count, "bytes": total, "records": recs,
                          "ratio_warm": round(seen[1] / seen[2], 3),
                          "ratio_cold": round(e2e[1] / e2e[2], 3),
                          "large_file_ratio": {k: round(v, 3) for k, v in big_ratio.items()}}))


def build_large(tmp: Path, size: int) -> Path:
    """One capture of about ``size`` bytes by the same builder."""
    path = tmp / "large" / "large.pcap"
    path.parent.mkdir(exist_ok=True)
    subprocess.run([sys.executable, str(BUILDER), "--build", str(path), str(size), "20"],
                   capture_output=True, text=True, check=True)
    return path


def stretch(src: Path, dst: Path, factor: int) -> Path:
    """``src`` (little-endian microsecond pcap) with the time since its first packet
    multiplied by ``factor``: the same packets, spread over more capture time."""
    data = bytearray(src.read_bytes())
    pos, t0 = 24, None
    while pos + 16 <= len(data):
        sec, usec, caplen, _ = struct.unpack_from("<IIII", data, pos)
        t = sec * 1_000_000 + usec
        t0 = t if t0 is None else t0
        sec, usec = divmod(t0 + (t - t0) * factor, 1_000_000)
        struct.pack_into("<II", data, pos, sec, usec)
        pos += 16 + caplen
    dst.write_bytes(data)
    return dst


if __name__ == "__main__":
    main()
