"""Run inside a lab namespace (``ip netns exec NS python ns_client.py ...``); prints JSON.

- ``ttl DST MAX``: one UDP datagram per TTL 1..MAX to DST (a closed port); for each, the ICMP
  error that came back (type, code, offender address) via IP_RECVERR, or null;
- ``resolve NAME...``: A lookups through this namespace's /etc/resolv.conf (dnspython's
  system resolver, the file ``ip netns exec`` bind-mounts from /etc/netns/<ns>/).

Independent of tlswatch: the checks must not share the code they check.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys

IP_RECVERR = 11  # linux/in.h (not exported by Python's socket module)
SO_EE_ORIGIN_ICMP = 2
_EE = struct.Struct("=IBBBBII")


def icmp_for_ttl(dst: str, ttl: int, timeout: float = 1.0) -> dict[str, object] | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_IP, IP_RECVERR, 1)
        s.setsockopt(socket.SOL_IP, socket.IP_TTL, ttl)
        s.connect((dst, 33434 + ttl))
        s.send(b"tlswatch-ttl-probe")
        poller = select.poll()
        poller.register(s, select.POLLERR)
        if not poller.poll(timeout * 1000):
            return None
        _data, ancillary, _flags, _addr = s.recvmsg(512, 512, socket.MSG_ERRQUEUE)
    for level, kind, data in ancillary:
        if level == socket.SOL_IP and kind == IP_RECVERR and len(data) >= _EE.size + 8:
            _errno, origin, icmp_type, code, _pad, _info, _d = _EE.unpack_from(data)
            offender = socket.inet_ntoa(data[_EE.size + 4 : _EE.size + 8])
            if origin == SO_EE_ORIGIN_ICMP:
                return {"type": icmp_type, "code": code, "from": offender}
    return None


def main(argv: list[str]) -> int:
    if argv[0] == "ttl":
        dst, top = argv[1], int(argv[2])
        print(json.dumps({str(t): icmp_for_ttl(dst, t) for t in range(1, top + 1)}))
        return 0
    if argv[0] == "resolve":
        import dns.resolver

        resolver = dns.resolver.Resolver()  # reads /etc/resolv.conf
        resolver.lifetime = 2.0
        out: dict[str, object] = {"nameservers": list(resolver.nameservers)}
        for name in argv[1:]:
            try:
                out[name] = sorted(r.to_text() for r in resolver.resolve(name, "A"))
            except dns.resolver.NXDOMAIN:
                out[name] = "nxdomain"
        print(json.dumps(out))
        return 0
    print(f"unknown command {argv[0]!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
