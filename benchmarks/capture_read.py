"""Capture reading throughput: tlswatch's reader + TCP reassembly vs tshark and scapy.

Fixed workload, built in a temp dir (never committed): one TLS connection (handshake, a
~5 KB certificate chain, a 300 KB response in 1400-byte segments with ACKs), one plain HTTP
connection and a DNS exchange are crafted once with scapy; the file is then written by
replicating those frames with rewritten client addresses and ports (byte patching, no scapy
per packet), 50 connections interleaved at a time. Every tool reads the same file in the
same run:

* ``tlswatch``: ``read_flows`` (pcap reader, link/IP/TCP decoding, reassembly, TLS detection),
  every event consumed;
* ``tlswatch+tls``: the same plus ``TLSConnection`` on each TLS flow until its certificate;
* ``tshark -r FILE -T fields -e frame.number`` and (full run) the issue's
  ``-Y tls.handshake.type==11 -T fields -e tls.handshake.certificate``;
* scapy ``PcapReader`` with full dissection, on the first packets only (it is slow).

Peak RSS is printed for two file sizes, to show memory stays flat as the file grows: for our
runs the child's ``VmHWM`` after resetting the high-water mark it inherits at fork; for tshark
``ru_maxrss`` from ``wait4`` (which cannot be lower than this script's own RSS at fork).

    python benchmarks/capture_read.py            # full run; output in capture_read.out
    python benchmarks/capture_read.py --smoke    # seconds-long run used by the test suite
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

CHILD_FLAG = "--child"
# Measure this checkout's tlswatch, whatever copy happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _craft_templates() -> list[tuple[int, bytes]]:
    """One TLS connection, one HTTP connection and a DNS query/answer, as (dt_ns, frame)."""
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    def vec(b: bytes, n: int) -> bytes:
        return len(b).to_bytes(n, "big") + b

    def records(ctype: int, payload: bytes, size: int = 16384) -> bytes:
        return b"".join(bytes([ctype]) + b"\x03\x03" + vec(payload[i : i + size], 2)
                        for i in range(0, len(payload), size))

    def hs(t: int, body: bytes) -> bytes:
        return bytes([t]) + vec(body, 3)

    sni = (0).to_bytes(2, "big") + vec(vec(b"\x00" + vec(b"bench.example", 2), 2), 2)
    ch = records(22, hs(1, b"\x03\x03" + b"\x01" * 32 + b"\x00" + vec(b"\x13\x01\xc0\x2f", 2)
                         + b"\x01\x00" + vec(sni, 2)))
    certs = [bytes([0x30]) + bytes(range(256)) * 7 for _ in range(3)]
    sh = b"\x03\x03" + b"\x02" * 32 + b"\x00\xc0\x2f\x00" + vec(b"", 2)
    flight = records(22, hs(2, sh) + hs(11, vec(b"".join(vec(c, 3) for c in certs), 3))
                     + hs(14, b""))
    finish_c = records(22, hs(16, vec(b"\x04" * 65, 1))) + records(20, b"\x01") + records(
        23, b"\x05" * 40)
    finish_s = records(20, b"\x01") + records(23, b"\x06" * 40)
    request = records(23, b"\x07" * 300)
    response = records(23, bytes(range(256)) * 1200)  # ~300 KB

    out: list[tuple[int, bytes]] = []
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    cli, srv = ("10.1.0.1", 50000), ("192.0.2.10", 443)

    def conv(cli: tuple[str, int], srv: tuple[str, int], flights: list[tuple[int, bytes]]) -> None:
        seq = [1000, 900000]
        ipid = [1, 30000]

        def pkt(side: int, flags: str, data: bytes = b"") -> None:
            s, d = (cli, srv) if side == 0 else (srv, cli)
            p = IP(src=s[0], dst=d[0], ttl=64 if side == 0 else 52, id=ipid[side]) / TCP(
                sport=s[1], dport=d[1], flags=flags, seq=seq[side],
                ack=seq[1 - side] if "A" in flags else 0, window=65535)
            if data:
                p = p / Raw(data)
            ipid[side] += 1
            seq[side] += len(data) + ("S" in flags) + ("F" in flags)
            out.append((50_000, bytes(eth / p)))

        pkt(0, "S")
        pkt(1, "SA")
        pkt(0, "A")
        for side, data in flights:
            for i, off in enumerate(range(0, len(data), 1400)):
                pkt(side, "PA", data[off : off + 1400])
                if i % 2:
                    pkt(1 - side, "A")
        pkt(0, "FA")
        pkt(1, "FA")
        pkt(0, "A")

    conv(cli, srv, [(0, ch), (1, flight), (0, finish_c), (1, finish_s), (0, request),
                    (1, response)])
    conv(("10.1.0.1", 50001), ("192.0.2.20", 80),
         [(0, b"GET / HTTP/1.1\r\nHost: bench.example\r\n\r\n"),
          (1, b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n" + b"x" * 20000)])
    q = DNS(id=7, rd=1, qd=DNSQR(qname="bench.example"))
    a = DNS(id=7, qr=1, qd=DNSQR(qname="bench.example"),
            an=DNSRR(rrname="bench.example", rdata="192.0.2.10"))
    out.append((50_000, bytes(eth / IP(src="10.1.0.1", dst="10.1.0.53") / UDP(
        sport=50002, dport=53) / q)))
    out.append((50_000, bytes(eth / IP(src="10.1.0.53", dst="10.1.0.1") / UDP(
        sport=53, dport=50002) / a)))
    return out


def write_shifted(f: BinaryIO, frame: bytes, clients: tuple[bytes, ...], new_ip: bytes,
                  port_shift: int, ts_ns: int) -> int:
    """Write ``frame`` as one pcap record with its client address (IPv4 src or dst, if it is
    one of ``clients``) replaced and its client port shifted; returns the bytes written."""
    fr = bytearray(frame)
    if fr[26:30] in clients:
        fr[26:30] = new_ip
        port = (struct.unpack_from("!H", fr, 34)[0] + port_shift) & 0xFFFF
        struct.pack_into("!H", fr, 34, port | 1024)
    elif fr[30:34] in clients:
        fr[30:34] = new_ip
        port = (struct.unpack_from("!H", fr, 36)[0] + port_shift) & 0xFFFF
        struct.pack_into("!H", fr, 36, port | 1024)
    sec, ns = divmod(ts_ns, 1_000_000_000)
    f.write(struct.pack("<IIII", sec, ns // 1000, len(fr), len(fr)))
    f.write(fr)
    return 16 + len(fr)


def write_workload(path: Path, target_bytes: int, concurrency: int = 50) -> tuple[int, int]:
    """Write the replicated capture; returns (packets, bytes of the file)."""
    template = _craft_templates()
    client_ip = bytes([10, 1, 0, 1])
    packets = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        written = 24
        ts = 1_700_000_000_000_000_000
        batch = 0
        while written < target_bytes:
            # Patch each frame's client address (IPv4 src or dst) and port per connection.
            conns = []
            for j in range(concurrency):
                n = batch * concurrency + j
                conns.append((bytes([10, 1 + (n >> 16) % 200, (n >> 8) & 255, n & 255]),
                              (n * 3) & 0xFFFF))
            for _dt, frame in template:
                for new_ip, port_shift in conns:
                    ts += 100_000  # 10k packets/s: flows close and leave within the file
                    written += write_shifted(f, frame, (client_ip,), new_ip, port_shift, ts)
                    packets += 1
            batch += 1
    return packets, written


# -- measured runs (each in its own process, for a clean peak RSS) --------------------------


def _reset_peak_rss() -> None:
    """A forked child inherits the parent's RSS high-water mark: reset it (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _child(mode: str, path: str, limit: int) -> None:
    _reset_peak_rss()
    from tlswatch.capture import Data, Detected, FlowEnd, read_flows
    from tlswatch.tls import Detection, TLSConnection

    t0 = time.perf_counter()
    events = flows = certs = 0
    reader = read_flows(path)
    if mode == "tlswatch":
        for ev in reader:
            events += 1
            if isinstance(ev, FlowEnd):
                flows += 1
    else:  # + TLS handshake parsing until the certificate, then stop that flow's data
        conns: dict[int, TLSConnection] = {}
        for ev in reader:
            events += 1
            if isinstance(ev, Data):
                conn = conns.get(ev.flow_id)
                if conn is None:
                    continue
                if ev.side == 0:
                    conn.feed_client(ev.data)
                else:
                    conn.feed_server(ev.data)
                if conn.certificates is not None:
                    certs += 1
                    del conns[ev.flow_id]
                    reader.skip(ev.flow_id)
            elif isinstance(ev, Detected):
                if ev.result is Detection.YES and ev.side == 0:
                    conns[ev.flow_id] = TLSConnection()
            elif isinstance(ev, FlowEnd):
                flows += 1
                conns.pop(ev.flow_id, None)
    dt = time.perf_counter() - t0
    rss = _peak_rss()
    print(json.dumps({"seconds": dt, "packets": reader.packets, "events": events,
                      "flows": flows, "certs": certs, "rss": rss}))


def _scapy_child(path: str, limit: int) -> None:
    _reset_peak_rss()
    from scapy.layers.inet import TCP
    from scapy.utils import PcapReader

    t0 = time.perf_counter()
    n = nbytes = 0
    with PcapReader(path) as r:
        for pkt in r:
            n += 1
            nbytes += len(pkt)
            if TCP in pkt:
                _ = bytes(pkt[TCP].payload)
            if n >= limit:
                break
    dt = time.perf_counter() - t0
    rss = _peak_rss()
    print(json.dumps({"seconds": dt, "packets": n, "bytes": nbytes, "rss": rss}))


def _run_child(args: list[str]) -> dict[str, float]:
    r = subprocess.run([sys.executable, __file__, CHILD_FLAG, *args], capture_output=True,
                       text=True, check=True)
    result: dict[str, float] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def _run_tool(cmd: list[str]) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of an external command, output discarded."""
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen(cmd, stdout=null, stderr=null)
        _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed with status {proc.returncode}")
    return dt, usage.ru_maxrss * 1024


def _line(name: str, seconds: float, packets: int, nbytes: int, rss: float | None,
          note: str = "") -> str:
    pps, mbs = packets / seconds, nbytes / seconds / 1e6
    rss_s = f"{rss / 2**20:6.1f} MiB" if rss is not None else "         -"
    return (f"  {name:<40} {seconds:7.2f} s {pps:10,.0f} pkt/s {mbs:7.1f} MB/s"
            f"  peak RSS {rss_s}{note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny workload (CI)")
    args = ap.parse_args()
    sizes = [3 << 20, 6 << 20] if args.smoke else [200 << 20, 400 << 20]
    concurrency = 5 if args.smoke else 50
    scapy_limit = 1000 if args.smoke else 10_000
    tshark = shutil.which("tshark")
    print(f"workload: {'smoke' if args.smoke else 'full'} run; TLS connections with a 5 KB "
          f"certificate chain and a 300 KB response, plain HTTP, DNS; {concurrency} connections "
          "interleaved, 10k packets/s of capture time; file in the page cache")
    rss_ours: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, size in enumerate(sizes):
            path = Path(tmp) / f"workload-{size >> 20}MiB.pcap"
            packets, nbytes = write_workload(path, size, concurrency)
            _run_tool(["cat", str(path)])  # warm the page cache for every reader alike
            print(f"\nfile {i + 1}: {packets:,} packets, {nbytes / 1e6:,.1f} MB")
            ours = _run_child(["tlswatch", str(path), "0"])
            ours_tls = _run_child(["tlswatch+tls", str(path), "0"])
            rss_ours.append(ours["rss"])
            t_ours = ours["seconds"]
            print(_line("tlswatch read_flows (reader+reassembly)", t_ours, packets, nbytes,
                        ours["rss"], f"  {int(ours['flows'])} flows"))
            print(_line("tlswatch read_flows + TLS handshakes", ours_tls["seconds"], packets,
                        nbytes, ours_tls["rss"], f"  {int(ours_tls['certs'])} certificates"))
            if tshark is None:
                print("  tshark: not installed (apt-get install tshark): comparison skipped")
            else:
                dt, rss = _run_tool([tshark, "-n", "-r", str(path), "-T", "fields", "-e",
                                     "frame.number"])
                print(_line("tshark -T fields -e frame.number", dt, packets, nbytes, rss,
                            f"  tlswatch {dt / t_ours:.1f}x faster"))
                if not args.smoke:
                    dt2, rss2 = _run_tool([tshark, "-n", "-r", str(path), "-Y",
                                           "tls.handshake.type==11", "-T", "fields", "-e",
                                           "tls.handshake.certificate"])
                    print(_line("tshark -Y tls.handshake.type==11 (certs)", dt2, packets,
                                nbytes, rss2,
                                f"  tlswatch+TLS {dt2 / ours_tls['seconds']:.1f}x faster"))
            if i == 0:
                sc = _run_child(["scapy", str(path), str(scapy_limit)])
                n_sc = int(sc["packets"])
                per_pkt_ratio = (sc["seconds"] / n_sc) / (t_ours / packets)
                print(_line(f"scapy PcapReader, first {n_sc:,} packets", sc["seconds"], n_sc,
                            int(sc["bytes"]), sc["rss"],
                            f"  tlswatch {per_pkt_ratio:.0f}x faster per packet"))
    growth = rss_ours[1] / rss_ours[0]
    print(f"\npeak RSS of tlswatch read_flows: {rss_ours[0] / 2**20:.1f} MiB for file 1, "
          f"{rss_ours[1] / 2**20:.1f} MiB for file 2 ({growth:.2f}x for "
          f"{sizes[1] / sizes[0]:.0f}x the file)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD_FLAG:
        mode, p, lim = sys.argv[2], sys.argv[3], int(sys.argv[4])
        if mode == "scapy":
            _scapy_child(p, lim)
        else:
            _child(mode, p, lim)
    else:
        main()
