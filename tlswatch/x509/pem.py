"""Certificate input: strict loading of user-supplied PEM/DER, tolerant parsing of peer chains.

Two policies on purpose (DESIGN §3.3): a file the *user* gave us that we can't read is a usage
error with a clear one-line message (:class:`CertificateInputError`); a certificate a *peer*
sent that we can't parse is data (:class:`ParsedCert` with ``error`` set), never an exception.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

__all__ = [
    "CertificateInputError",
    "ParsedCert",
    "load_certificates",
    "load_certificates_from_path",
    "parse_der_chain",
]

_CERT_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE"})
_BEGIN_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,40})-----")
_MAX_ERROR_DETAIL = 160


class CertificateInputError(ValueError):
    """A certificate input the user supplied is unusable; ``str()`` is a one-line message."""


@dataclass(frozen=True, slots=True)
class ParsedCert:
    """One certificate as a peer sent it: the raw DER plus the parse result or its error."""

    der: bytes
    certificate: x509.Certificate | None
    error: str | None

    @property
    def sha256(self) -> str:
        """SHA-256 of the DER as sent (available even when parsing failed)."""
        return hashlib.sha256(self.der).hexdigest()

    @property
    def ok(self) -> bool:
        return self.certificate is not None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:_MAX_ERROR_DETAIL]


def _parse_der(der: bytes) -> x509.Certificate:
    # Real roots and peers carry negative serials etc.; cryptography warns about them. That is
    # a property of the data, not a bug in the caller, so don't let it spam the user.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_der_x509_certificate(der)


def _der_length(data: bytes, offset: int) -> tuple[int, int] | None:
    """(header length, content length) of the DER TLV at ``offset``; None if header is cut."""
    if offset + 2 > len(data):
        return None
    first = data[offset + 1]
    if first < 0x80:
        return 2, first
    n = first & 0x7F
    if n == 0 or n > 4:  # indefinite length or absurd size: not a DER certificate
        return -1, 0
    if offset + 2 + n > len(data):
        return None
    return 2 + n, int.from_bytes(data[offset + 2 : offset + 2 + n], "big")


def _split_der(data: bytes, source: str, max_certs: int) -> Iterator[bytes]:
    """Split concatenated DER SEQUENCEs, checking lengths before slicing (never over-reads)."""
    offset, index = 0, 0
    while offset < len(data):
        index += 1
        if index > max_certs:
            raise CertificateInputError(f"{source}: more than {max_certs} certificates")
        if data[offset] != 0x30:
            if index == 1:
                raise CertificateInputError(
                    f"{source}: no certificate found (neither PEM nor DER; "
                    f"first byte 0x{data[0]:02x})"
                )
            raise CertificateInputError(
                f"{source}: unexpected data after DER certificate {index - 1} "
                f"(byte 0x{data[offset]:02x} at offset {offset})"
            )
        header = _der_length(data, offset)
        if header is None:
            raise CertificateInputError(f"{source}: DER certificate {index} is truncated")
        hlen, clen = header
        if hlen < 0:
            raise CertificateInputError(
                f"{source}: DER certificate {index} has an unsupported length encoding"
            )
        end = offset + hlen + clen
        if end > len(data):
            raise CertificateInputError(
                f"{source}: DER certificate {index} is truncated "
                f"(needs {hlen + clen} bytes, {len(data) - offset} present)"
            )
        yield data[offset:end]
        offset = end


def _pem_blocks(data: bytes, source: str) -> Iterator[tuple[str, bytes]]:
    """Yield (label, base64 body) for each PEM block, in order; text between blocks is ignored.

    Linear time: each BEGIN is paired with the next matching END by ``find``.
    """
    pos = 0
    number = 0
    while (m := _BEGIN_RE.search(data, pos)) is not None:
        number += 1
        label = m.group(1).decode("ascii")
        end_marker = b"-----END " + m.group(1) + b"-----"
        end = data.find(end_marker, m.end())
        if end < 0:
            raise CertificateInputError(
                f"{source}: PEM block {number} ({label}) is truncated: no END line"
            )
        yield label, data[m.end() : end]
        pos = end + len(end_marker)


def load_certificates(
    data: bytes, *, source: str, max_certs: int = 100
) -> list[x509.Certificate]:
    """Parse one or many certificates from PEM (text between blocks allowed) or DER bytes.

    Raises :class:`CertificateInputError` naming ``source`` on empty input, no certificate,
    an unparseable block (with its number), truncation, or more than ``max_certs`` certificates
    (detected as soon as block ``max_certs + 1`` is seen, so huge inputs are cheap to reject).
    """
    if not data or not data.strip():
        raise CertificateInputError(f"{source}: empty input")
    certs: list[x509.Certificate] = []
    if b"-----BEGIN " not in data:
        for index, der in enumerate(_split_der(data, source, max_certs), start=1):
            try:
                certs.append(_parse_der(der))
            except ValueError as exc:
                raise CertificateInputError(
                    f"{source}: DER certificate {index} does not parse: {_one_line(exc)}"
                ) from None
        return certs

    other_labels: list[str] = []
    for number, (label, body) in enumerate(_pem_blocks(data, source), start=1):
        if label not in _CERT_LABELS:
            other_labels.append(label)  # keys, CSRs … in a bundle: skip, mention if no certs
            continue
        if len(certs) >= max_certs:
            raise CertificateInputError(f"{source}: more than {max_certs} certificates")
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            raise CertificateInputError(
                f"{source}: PEM block {number} ({label}) is not valid base64"
            ) from None
        if not der:
            raise CertificateInputError(f"{source}: PEM block {number} ({label}) is empty")
        header = _der_length(der, 0)
        if header is None or (header[0] > 0 and header[0] + header[1] > len(der)):
            raise CertificateInputError(
                f"{source}: PEM block {number} ({label}) is truncated (DER shorter than its "
                "length header)"
            )
        try:
            certs.append(_parse_der(der))
        except ValueError as exc:
            raise CertificateInputError(
                f"{source}: PEM block {number} ({label}) is not a valid certificate: "
                f"{_one_line(exc)}"
            ) from None
    if not certs:
        found = f" (found only: {', '.join(sorted(set(other_labels)))})" if other_labels else ""
        raise CertificateInputError(f"{source}: no certificate found{found}")
    return certs


def load_certificates_from_path(
    path: Path, *, source: str | None = None, max_certs: int = 100
) -> list[x509.Certificate]:
    """Read ``path`` and :func:`load_certificates` it; unreadable files are input errors too."""
    name = source if source is not None else str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CertificateInputError(f"{name}: cannot read: {exc.strerror or exc}") from None
    return load_certificates(data, source=name, max_certs=max_certs)


def parse_der_chain(ders: Sequence[bytes]) -> list[ParsedCert]:
    """Parse a peer's chain leniently: every element comes back, failures as error strings."""
    out: list[ParsedCert] = []
    for der in ders:
        try:
            out.append(ParsedCert(bytes(der), _parse_der(der), None))
        except Exception as exc:  # peer data must never crash us
            out.append(ParsedCert(bytes(der), None, f"{type(exc).__name__}: {_one_line(exc)}"))
    return out
