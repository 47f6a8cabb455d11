"""The parts of a DNS answer an observation needs, parsed by dnspython and remembered.

Captures repeat answers: every client of a resolver gets the same bytes for a name until its
TTL ticks. The parse depends on the message's bytes after its 16-bit ID only, so it is
cached on those (a bounded LRU): a repeated answer costs one dictionary lookup instead of a
dnspython parse. dnspython is imported on the first answer: captures without DNS never pay
for it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final, NamedTuple

__all__ = ["MALFORMED", "DnsAnswer", "parse_answer"]

#: What :func:`parse_answer` returns for bytes dnspython cannot parse.
MALFORMED: Final = "malformed"
_CACHE_SIZE: Final = 4096
_A: Final = 1
_AAAA: Final = 28


class DnsAnswer(NamedTuple):
    """The question and the addresses of its type (as text), from one DNS message."""

    qname: str  # without the final dot ("." for the root)
    qtype: str  # "A" | "AAAA"
    rcode: str  # e.g. "NOERROR", "NXDOMAIN"
    answers: tuple[str, ...]


def parse_answer(wire: bytes) -> DnsAnswer | str | None:
    """The answer in ``wire`` (a whole DNS message, at least 12 bytes); :data:`MALFORMED` for
    bytes that are not a DNS message; None when its first question is not A or AAAA (or
    there is none). Hostile bytes never raise."""
    return _parse(wire[2:])


@lru_cache(maxsize=_CACHE_SIZE)
def _parse(after_id: bytes) -> DnsAnswer | str | None:
    import dns.exception
    import dns.message
    import dns.rcode
    import dns.rdatatype

    try:
        msg = dns.message.from_wire(b"\0\0" + after_id)
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        return MALFORMED
    if not msg.question:
        return None
    question = msg.question[0]
    qtype = question.rdtype
    if qtype != _A and qtype != _AAAA:
        return None
    return DnsAnswer(
        qname=question.name.to_text(omit_final_dot=True) or ".",
        qtype=dns.rdatatype.to_text(qtype),
        rcode=dns.rcode.to_text(msg.rcode()),
        answers=tuple(r.to_text() for rrset in msg.answer if rrset.rdtype == qtype
                      for r in rrset),
    )
