"""DNS answers parsed once per distinct message (the ID aside), hostile bytes never raise."""

from __future__ import annotations

import dns.message
import dns.rrset

from tlswatch.capture.dns_answer import MALFORMED, DnsAnswer, parse_answer


def _answer(qid: int, name: str = "example.org", addr: str = "192.0.2.1",
            rdtype: str = "A", rcode: int = 0) -> bytes:
    q = dns.message.make_query(name, rdtype)
    r = dns.message.make_response(q)
    r.id = qid
    r.set_rcode(rcode)
    if addr:
        r.answer.append(dns.rrset.from_text(name + ".", 60, "IN", rdtype, addr))
    return r.to_wire()


def test_answer_fields_and_ids_do_not_matter() -> None:
    a, b = parse_answer(_answer(1)), parse_answer(_answer(0xBEEF))
    assert a == b == DnsAnswer("example.org", "A", "NOERROR", ("192.0.2.1",))
    assert parse_answer(_answer(2, addr="2001:db8::1", rdtype="AAAA")) == DnsAnswer(
        "example.org", "AAAA", "NOERROR", ("2001:db8::1",))
    assert parse_answer(_answer(3, addr="", rcode=3)) == DnsAnswer(
        "example.org", "A", "NXDOMAIN", ())


def test_other_types_and_garbage() -> None:
    assert parse_answer(_answer(4, addr="mail.example.org.", rdtype="CNAME")) is None
    wire = _answer(5)
    assert parse_answer(wire[:20]) == MALFORMED
    assert parse_answer(b"\x00" * 12 + b"\xff" * 40) in (MALFORMED, None)
