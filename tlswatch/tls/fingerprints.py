"""JA3 / JA3S (salesforce/ja3) and JA4 (FoxIO-LLC/ja4, technical_details/JA4.md) fingerprints.

GREASE values (RFC 8701) are ignored everywhere, as both specifications require.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache
from typing import Final, Literal

from .hello import ClientHello, Extension, ServerHello, is_grease

__all__ = [
    "ja3",
    "ja3_string",
    "ja3s",
    "ja3s_string",
    "ja4",
    "ja4_o",
    "ja4_r",
    "ja4_ro",
]

_SNI: Final = 0x0000
_ALPN: Final = 0x0010
_EMPTY_HASH: Final = "000000000000"

_JA4_VERSIONS: Final[dict[int, str]] = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}

Protocol = Literal["t", "q", "d"]


def _nogrease(values: Iterable[int]) -> list[int]:
    return [v for v in values if not is_grease(v)]


def _dash(values: Iterable[int]) -> str:
    return "-".join(str(v) for v in values)


def ja3_string(hello: ClientHello) -> str:
    """``SSLVersion,Ciphers,Extensions,EllipticCurves,EcPointFormats`` in decimal, wire order."""
    return _ja3_string(hello.legacy_version, hello.cipher_suites, hello.extension_types,
                       hello.supported_groups, hello.ec_point_formats)


def _ja3_string(legacy_version: int, cipher_suites: tuple[int, ...],
                extension_types: tuple[int, ...], supported_groups: tuple[int, ...],
                ec_point_formats: tuple[int, ...]) -> str:
    return ",".join(
        (
            str(legacy_version),
            _dash(_nogrease(cipher_suites)),
            _dash(_nogrease(extension_types)),
            _dash(_nogrease(supported_groups)),
            _dash(ec_point_formats),
        )
    )


def ja3(hello: ClientHello) -> str:
    # tuple() is free on the decoder's tuples and makes a hand-built hello's lists hashable.
    return _ja3(hello.legacy_version, tuple(hello.cipher_suites), hello.extension_types,
                tuple(hello.supported_groups), tuple(hello.ec_point_formats))


# Fingerprints are pure functions of a few hello fields, and one client sends the same
# fields over and over (a probe campaign: thousands of identical hellos but for randoms,
# key shares and SNI): compute each distinct one once.
@lru_cache(maxsize=1024)
def _ja3(legacy_version: int, cipher_suites: tuple[int, ...], extension_types: tuple[int, ...],
         supported_groups: tuple[int, ...], ec_point_formats: tuple[int, ...]) -> str:
    text = _ja3_string(legacy_version, cipher_suites, extension_types, supported_groups,
                       ec_point_formats)
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def ja3s_string(hello: ServerHello) -> str:
    """``SSLVersion,Cipher,Extensions`` of a ServerHello, decimal, wire order."""
    return ",".join(
        (
            str(hello.legacy_version),
            str(hello.cipher_suite),
            _dash(_nogrease(hello.extension_types)),
        )
    )


def ja3s(hello: ServerHello) -> str:
    return _ja3s(ja3s_string(hello))


@lru_cache(maxsize=1024)
def _ja3s(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _alnum(b: int) -> bool:
    return 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A


def _ja4_alpn(hello: ClientHello) -> str:
    if not hello.alpn_protocols or not hello.alpn_protocols[0]:
        return "00"
    first = hello.alpn_protocols[0]
    if _alnum(first[0]) and _alnum(first[-1]):
        return chr(first[0]) + chr(first[-1])
    # Non-alphanumeric edges: first and last hex digits instead (JA4.md "ALPN Extension Value").
    hexed = first.hex()
    return hexed[0] + hexed[-1]


def _ja4_a(hello: ClientHello, protocol: Protocol) -> str:
    versions = _nogrease(hello.supported_versions)
    version = max(versions) if versions else hello.legacy_version
    exts = _nogrease(hello.extension_types)
    return "".join(
        (
            protocol,
            _JA4_VERSIONS.get(version, "00"),
            "d" if _SNI in exts else "i",
            f"{min(len(_nogrease(hello.cipher_suites)), 99):02d}",
            f"{min(len(exts), 99):02d}",
            _ja4_alpn(hello),
        )
    )


def _hex4(values: Iterable[int]) -> str:
    return ",".join(f"{v:04x}" for v in values)


def _ja4_parts(hello: ClientHello, original: bool) -> tuple[str, str]:
    """Raw (unhashed) cipher and extension parts of JA4 / JA4_o."""
    ciphers = _nogrease(hello.cipher_suites)
    exts = _nogrease(hello.extension_types)
    if not original:
        ciphers = sorted(ciphers)
        exts = sorted(e for e in exts if e not in (_SNI, _ALPN))
    ext_part = _hex4(exts)
    sigs = _nogrease(hello.signature_algorithms)
    if sigs:
        ext_part += "_" + _hex4(sigs)
    return _hex4(ciphers), ext_part


def _hash12(raw: str, empty: bool) -> str:
    if empty:
        return _EMPTY_HASH
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _ja4(hello: ClientHello, protocol: Protocol, original: bool, raw: bool) -> str:
    alpn = bytes(hello.alpn_protocols[0]) if hello.alpn_protocols else None
    return _ja4_memo(protocol, original, raw, hello.legacy_version,
                     tuple(hello.supported_versions), tuple(hello.cipher_suites),
                     hello.extension_types, alpn, tuple(hello.signature_algorithms))


@lru_cache(maxsize=1024)
def _ja4_memo(protocol: Protocol, original: bool, raw: bool, legacy_version: int,
              supported_versions: tuple[int, ...], cipher_suites: tuple[int, ...],
              extension_types: tuple[int, ...], alpn: bytes | None,
              signature_algorithms: tuple[int, ...]) -> str:
    # Exactly the fields JA4 reads (only the first ALPN protocol counts).
    hello = ClientHello(legacy_version, b"", b"", cipher_suites,
                        extensions=tuple(Extension(t, b"") for t in extension_types),
                        alpn_protocols=() if alpn is None else (alpn,),
                        supported_versions=supported_versions,
                        signature_algorithms=signature_algorithms)
    return _ja4_compute(hello, protocol, original, raw)


def _ja4_compute(hello: ClientHello, protocol: Protocol, original: bool, raw: bool) -> str:
    a = _ja4_a(hello, protocol)
    b, c = _ja4_parts(hello, original)
    if raw:
        return f"{a}_{b}_{c}"
    # An empty list hashes to zeros, per spec, so "nothing there" is visible.
    return f"{a}_{_hash12(b, not b)}_{_hash12(c, not c or c.startswith('_'))}"


def ja4(hello: ClientHello, protocol: Protocol = "t") -> str:
    """JA4, e.g. ``t13d1516h2_8daaf6152771_e5627efa2ab1``."""
    return _ja4(hello, protocol, original=False, raw=False)


def ja4_r(hello: ClientHello, protocol: Protocol = "t") -> str:
    """JA4 raw: sorted lists, unhashed."""
    return _ja4(hello, protocol, original=False, raw=True)


def ja4_o(hello: ClientHello, protocol: Protocol = "t") -> str:
    """JA4 with wire-order lists (SNI and ALPN kept), hashed."""
    return _ja4(hello, protocol, original=True, raw=False)


def ja4_ro(hello: ClientHello, protocol: Protocol = "t") -> str:
    """JA4 with wire-order lists, unhashed."""
    return _ja4(hello, protocol, original=True, raw=True)
