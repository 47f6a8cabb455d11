"""Hand-built TLS wire structures for tests (not a test module)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

DATA = Path(__file__).parent / "data"


def u16s(values: Iterable[int]) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)


def vec8(data: bytes) -> bytes:
    return len(data).to_bytes(1, "big") + data


def vec16(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def vec24(data: bytes) -> bytes:
    return len(data).to_bytes(3, "big") + data


def record(ctype: int, payload: bytes, version: int = 0x0303) -> bytes:
    return bytes([ctype]) + version.to_bytes(2, "big") + vec16(payload)


def records(ctype: int, payload: bytes, size: int, version: int = 0x0303) -> bytes:
    """Split ``payload`` over records of at most ``size`` bytes."""
    return b"".join(
        record(ctype, payload[i : i + size], version) for i in range(0, len(payload), size)
    )


def hs(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + vec24(body)


def ext(etype: int, data: bytes = b"") -> bytes:
    return etype.to_bytes(2, "big") + vec16(data)


def sni_ext(host: bytes) -> bytes:
    return ext(0, vec16(b"\x00" + vec16(host)))


def alpn_ext(*protos: bytes) -> bytes:
    return ext(16, vec16(b"".join(vec8(p) for p in protos)))


def versions_ext(*versions: int) -> bytes:
    return ext(43, vec8(u16s(versions)))


def groups_ext(*groups: int) -> bytes:
    return ext(10, vec16(u16s(groups)))


def point_formats_ext(*formats: int) -> bytes:
    return ext(11, vec8(bytes(formats)))


def sigalgs_ext(*algs: int) -> bytes:
    return ext(13, vec16(u16s(algs)))


def key_share_ext(*groups: int) -> bytes:
    return ext(51, vec16(b"".join(g.to_bytes(2, "big") + vec16(b"\x11" * 32) for g in groups)))


def client_hello_body(
    ciphers: Iterable[int] = (0x1301, 0xC02F),
    extensions: Iterable[bytes] = (),
    version: int = 0x0303,
    session_id: bytes = b"",
    random: bytes = b"\x01" * 32,
    compression: bytes = b"\x00",
    with_extensions_block: bool = True,
) -> bytes:
    body = version.to_bytes(2, "big") + random + vec8(session_id)
    body += vec16(u16s(ciphers)) + vec8(compression)
    if with_extensions_block:
        body += vec16(b"".join(extensions))
    return body


def server_hello_body(
    cipher: int = 0x1301,
    extensions: Iterable[bytes] = (),
    version: int = 0x0303,
    random: bytes = b"\x02" * 32,
    session_id: bytes = b"",
) -> bytes:
    return (
        version.to_bytes(2, "big")
        + random
        + vec8(session_id)
        + cipher.to_bytes(2, "big")
        + b"\x00"
        + vec16(b"".join(extensions))
    )


def certificate_body(certs: Iterable[bytes], tls13: bool = False, context: bytes = b"") -> bytes:
    if tls13:
        entries = b"".join(vec24(c) + vec16(b"") for c in certs)
        return vec8(context) + vec24(entries)
    return vec24(b"".join(vec24(c) for c in certs))


def sslv2_hello(
    version: int = 0x0301,
    specs: Iterable[int] = (0x010080, 0x000035, 0x00002F),
    challenge: bytes = b"\x07" * 16,
    session_id: bytes = b"",
) -> bytes:
    spec_bytes = b"".join(s.to_bytes(3, "big") for s in specs)
    body = (
        b"\x01"
        + version.to_bytes(2, "big")
        + len(spec_bytes).to_bytes(2, "big")
        + len(session_id).to_bytes(2, "big")
        + len(challenge).to_bytes(2, "big")
        + spec_bytes
        + session_id
        + challenge
    )
    return (0x8000 | len(body)).to_bytes(2, "big") + body


def load_transcript(name: str) -> list[tuple[str, bytes]]:
    """Flights of a generated transcript (see data/make_fixtures.py)."""
    out = []
    for line in (DATA / f"{name}.transcript").read_text().split("\n"):
        if line.strip():
            side, hexed = line.split()
            out.append((side, bytes.fromhex(hexed)))
    return out


def side_stream(name: str, side: str) -> bytes:
    return b"".join(data for s, data in load_transcript(name) if s == side)
