"""Certificate handshake message decoding (RFC 5246 §7.4.2 and RFC 8446 §4.4.2)."""

from __future__ import annotations

from dataclasses import dataclass

from ._reader import DecodeError, Reader

__all__ = ["CertificateMessage", "DecodeError", "decode_certificate"]


@dataclass(frozen=True, slots=True)
class CertificateMessage:
    """Certificates as presented (DER, leaf first). TLS 1.3 adds a request context and
    per-entry extension blocks (raw bytes, one per certificate)."""

    certificates: tuple[bytes, ...]
    request_context: bytes = b""
    entry_extensions: tuple[bytes, ...] = ()
    tls13: bool = False


def decode_certificate(body: bytes, *, tls13: bool = False) -> CertificateMessage:
    """Decode a Certificate message body. Raises :class:`DecodeError` when lengths don't fit."""
    r = Reader(body)
    context = r.vec8() if tls13 else b""
    n = r.u24()
    if n != r.remaining:
        raise DecodeError("certificate_list length does not match message")
    certs: list[bytes] = []
    exts: list[bytes] = []
    while r.remaining:
        cert = r.vec24()
        if not cert:
            raise DecodeError("empty certificate entry")
        certs.append(cert)
        if tls13:
            exts.append(r.vec16())
    return CertificateMessage(tuple(certs), context, tuple(exts), tls13)
