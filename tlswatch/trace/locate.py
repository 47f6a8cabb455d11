"""Where does interference start? A pure decision over judged per-TTL answers.

The located hop is the smallest TTL at which the target SNI's ClientHello draws an answer
the verdict engine calls interference (``intercepted`` or ``blocked``, judged against the
control SNI's full-path answer) while the control SNI at that TTL drew something else, and
the target's answer at the full path is interference too (a one-off is noise, not a box).
A silent drop is located where the target goes silent for good while the control still
draws ICMP or an answer there. ``kind``:

* ``interception`` — a TLS server answered for the target with a chain judged intercepted;
* ``injection`` — a RST, a FIN, an alert, non-TLS bytes or an ICMP unreachable instead;
* ``drop`` — only silence from that hop on (weaker: routers may also rate-limit ICMP);
* ``none`` — the target was answered like the control (no interference on this path);
* ``inconclusive`` — no control answer to compare with, or interference seen only at
  some TTLs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from tlswatch.failures import peer_detail
from tlswatch.trace.hops import SERVER_HELLO, SYN_ACK, TIMEOUT, is_terminal
from tlswatch.trace.record import ProbeSummary, TraceHop

__all__ = ["INTERFERENCE", "Location", "locate"]

#: Target verdicts that count as interference at a hop.
INTERFERENCE: Final = frozenset({"intercepted", "blocked"})


@dataclass(frozen=True, slots=True)
class Location:
    located_hop: int | None
    located_router: str | None
    server_hop: int | None
    tcp_hop: int | None
    kind: str
    evidence: tuple[str, ...]


def _answered(p: ProbeSummary | None) -> bool:
    return p is not None and is_terminal(p.response) and not p.response.startswith(
        "connect_failed")


def _describe(p: ProbeSummary | None) -> str:
    if p is None:
        return "nothing (not probed)"
    if p.response == SERVER_HELLO:
        leaf = p.leaf
        issuer = peer_detail(leaf.issuer) if leaf and leaf.issuer else "?"
        return f"a ServerHello, chain {p.outcome} (leaf issuer {issuer})"
    if p.response.startswith("icmp_"):
        return f"{p.response} from {p.router or '?'}"
    if p.response == "rst":
        return f"a RST (IP TTL {p.rst_ttl}, IP ID {p.rst_ip_id})"
    return p.response


def _kind(p: ProbeSummary) -> str:
    return "interception" if p.response == SERVER_HELLO else "injection"


def _path_routers(hops: Sequence[TraceHop], upto: int | None) -> str | None:
    seen = [f"{h.ttl}={h.router}" for h in hops if h.router and (upto is None or h.ttl < upto)]
    return "routers from ICMP time exceeded: " + ", ".join(seen) if seen else None


def _drop_hop(hops: Sequence[TraceHop]) -> int | None:
    """The TTL from which the target is silent for good while the control is not."""
    probed = [h for h in hops if h.target is not None]
    if not probed or probed[-1].target is None or probed[-1].target.response != TIMEOUT:
        return None
    start = None
    for h in reversed(probed):
        if h.target is None or h.target.response != TIMEOUT:
            break
        start = h
    if start is None or start.control is None or start.control.response == TIMEOUT:
        return None
    return start.ttl


def _injector_evidence(hops: Sequence[TraceHop], k: int, p: ProbeSummary) -> list[str]:
    out = []
    if p.response == "rst" and p.rst_ttl is not None:
        ref = p.syn_ack_ttl
        if ref is not None and ref != p.rst_ttl:
            out.append(f"the RST's IP TTL {p.rst_ttl} differs from the TCP peer's SYN-ACK "
                       f"TTL {ref}: another box sent it")
        elif ref is not None:
            out.append(f"the RST's IP TTL {p.rst_ttl} equals the TCP peer's SYN-ACK TTL "
                       "(a box at the same distance, or the peer itself)")
    later = [h for h in hops if h.ttl > k and h.target is not None]
    if later:
        beyond = [h for h in later if h.target is not None and h.target.router]
        # Only an ICMP quoting the hello's first segment (offset 0: the one with the SNI)
        # shows the hello itself went on; a later segment may pass a box that drops the first.
        first = [h for h in beyond if h.target is not None and h.target.quoted_offset == 0]
        if first:
            h = first[0]
            out.append(f"the target's hello also travelled past hop {k} (ICMP from "
                       f"{h.target.router if h.target else '?'} at ttl {h.ttl} quotes its "
                       "first segment): an on-path box that sees copies")
        elif beyond:
            out.append(f"beyond hop {k} only later segments of the target's hello drew ICMP: "
                       "the box drops the segment with the SNI (in-path)")
        else:
            out.append(f"no ICMP from beyond hop {k} for the target SNI: the box is in-path "
                       "(the hello does not go on)")
    return out


def locate(hops: Sequence[TraceHop], *, sni: str, control_sni: str | None) -> Location:
    """Decide the located hop, the kind of interference and the evidence lines."""
    server_hop = next((h.ttl for h in hops if _answered(h.control)), None)
    tcp_hop = next((h.ttl for h in hops if h.syn is not None and h.syn.response == SYN_ACK),
                   None)
    targets = [h for h in hops if h.target is not None]
    evidence: list[str] = []
    final = targets[-1] if targets else None
    final_t = final.target if final else None
    if final is not None and final_t is not None:
        ctl = next((h.control for h in hops if h.ttl == server_hop), None)
        evidence.append(f"full path (ttl {final.ttl}): {sni} drew {_describe(final_t)}"
                        + (f"; {control_sni} drew {_describe(ctl)} at ttl {server_hop}"
                           if control_sni and server_hop else ""))
    if server_hop is not None:
        evidence.append(f"the control SNI {control_sni} is answered from hop {server_hop}")
    elif control_sni is not None:
        evidence.append(f"the control SNI {control_sni} was never answered: nothing to "
                        "compare with")
    if tcp_hop is not None:
        evidence.append(f"TTL-limited SYNs complete the TCP handshake at hop {tcp_hop}")

    final_bad = final_t is not None and final_t.verdict in INTERFERENCE
    located: int | None = None
    kind = "none"
    for h in targets:
        t = h.target
        assert t is not None
        if not _answered(t) or t.verdict not in INTERFERENCE:
            continue
        c = h.control
        if c is not None and c.response == t.response and c.outcome == t.outcome:
            continue  # the control drew the same: not specific to the target SNI
        if not final_bad:
            evidence.append(f"hop {h.ttl}: {sni} drew {_describe(t)}, but not at the full "
                            "path: not located (path change or a flaky box?)")
            kind = "inconclusive"
            break
        located, kind = h.ttl, _kind(t)
        evidence.append(f"hop {h.ttl}: {sni} drew {_describe(t)} ({t.verdict}); the control "
                        f"SNI at this TTL drew {_describe(c)}")
        if t.interception:
            evidence.append(f"hop {h.ttl}: interception evidence: {t.interception}")
        evidence.extend(f"hop {h.ttl}: {line}" for line in _injector_evidence(hops, h.ttl, t))
        break
    if located is None and kind == "none":
        drop = _drop_hop(hops)
        if drop is not None and final_bad:
            located, kind = drop, "drop"
            ctl = next(h.control for h in hops if h.ttl == drop)
            evidence.append(f"hop {drop}: {sni} is silent from this TTL on while the control "
                            f"SNI drew {_describe(ctl)} (a drop; ICMP rate limits can mimic "
                            "silence)")
        elif control_sni is None and final_t is not None and _answered(final_t):
            kind = "inconclusive" if final_t.verdict != "ok" else "none"
            if kind == "inconclusive":
                evidence.append("no control SNI: an answer that is not interception cannot "
                                "be told from the server's own")
        elif server_hop is None and control_sni is not None:
            kind = "inconclusive"
    if located is not None:
        if server_hop is not None and located == server_hop:
            evidence.append(f"hop {located} is also where the control SNI is answered: the box "
                            f"sits just before the server (after hop {located - 1}) or "
                            "terminates TCP for it (a transparent proxy; then the hops beyond "
                            "it are not visible on this port)")
        elif server_hop is not None and located < server_hop:
            evidence.append(f"hop {located} is {server_hop - located} hop(s) before the one "
                            "answering the control SNI")
    routers = _path_routers(hops, located)
    if routers:
        evidence.append(routers)
    located_router = None
    if located is not None:
        located_router = next((h.router for h in hops if h.ttl == located and h.router), None)
    return Location(located, located_router, server_hop, tcp_hop, kind, tuple(evidence))
