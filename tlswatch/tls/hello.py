"""ClientHello (TLS and SSLv2-compatible), ServerHello and HelloRetryRequest decoding."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from ._reader import DecodeError, Reader, u16_list

__all__ = [
    "HRR_RANDOM",
    "ClientHello",
    "DecodeError",
    "Extension",
    "ExtensionType",
    "ServerHello",
    "decode_client_hello",
    "decode_server_hello",
    "decode_sslv2_client_hello",
    "is_grease",
]

# RFC 8446 §4.1.3: a ServerHello with this random (SHA-256 of "HelloRetryRequest") is an HRR.
HRR_RANDOM: Final = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)


class ExtensionType(enum.IntEnum):
    SERVER_NAME = 0
    STATUS_REQUEST = 5
    SUPPORTED_GROUPS = 10
    EC_POINT_FORMATS = 11
    SIGNATURE_ALGORITHMS = 13
    ALPN = 16
    SIGNED_CERTIFICATE_TIMESTAMP = 18
    PADDING = 21
    ENCRYPT_THEN_MAC = 22
    EXTENDED_MASTER_SECRET = 23
    COMPRESS_CERTIFICATE = 27
    SESSION_TICKET = 35
    PRE_SHARED_KEY = 41
    EARLY_DATA = 42
    SUPPORTED_VERSIONS = 43
    COOKIE = 44
    PSK_KEY_EXCHANGE_MODES = 45
    POST_HANDSHAKE_AUTH = 49
    SIGNATURE_ALGORITHMS_CERT = 50
    KEY_SHARE = 51
    ENCRYPTED_CLIENT_HELLO = 0xFE0D
    RENEGOTIATION_INFO = 0xFF01


def is_grease(value: int) -> bool:
    """RFC 8701 GREASE value (0x0a0a, 0x1a1a, ... 0xfafa) for 16-bit code points."""
    return (value & 0x0F0F) == 0x0A0A and (value >> 8) == (value & 0xFF)


@dataclass(frozen=True, slots=True)
class Extension:
    type: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ClientHello:
    """A decoded ClientHello. Decoded extension fields use the first occurrence of each type.

    ``anomalies`` lists oddities that did not stop decoding (e.g. ``malformed_extension:16``).
    For SSLv2-compatible hellos, ``cipher_specs`` holds the 3-byte specs and ``cipher_suites``
    the ones that map to TLS suites (first byte zero).
    """

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: tuple[int, ...] = ()
    extensions: tuple[Extension, ...] = ()
    server_name: str | None = None
    alpn_protocols: tuple[bytes, ...] = ()
    supported_versions: tuple[int, ...] = ()
    supported_groups: tuple[int, ...] = ()
    ec_point_formats: tuple[int, ...] = ()
    signature_algorithms: tuple[int, ...] = ()
    key_share_groups: tuple[int, ...] = ()
    anomalies: tuple[str, ...] = ()
    sslv2: bool = False
    cipher_specs: tuple[int, ...] = ()

    @property
    def extension_types(self) -> tuple[int, ...]:
        return tuple(e.type for e in self.extensions)

    @property
    def max_version(self) -> int:
        """Highest non-GREASE supported_versions entry, else legacy_version."""
        versions = [v for v in self.supported_versions if not is_grease(v)]
        return max(versions) if versions else self.legacy_version


@dataclass(frozen=True, slots=True)
class ServerHello:
    """A decoded ServerHello; ``is_hrr`` marks a HelloRetryRequest."""

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int
    extensions: tuple[Extension, ...] = ()
    is_hrr: bool = False
    selected_version: int | None = None
    alpn_protocol: bytes | None = None
    key_share_group: int | None = None
    anomalies: tuple[str, ...] = ()

    @property
    def extension_types(self) -> tuple[int, ...]:
        return tuple(e.type for e in self.extensions)

    @property
    def version(self) -> int:
        """Negotiated version: supported_versions if present, else legacy_version."""
        return self.selected_version if self.selected_version is not None else self.legacy_version


def _decode_extensions(r: Reader) -> tuple[Extension, ...]:
    if r.remaining == 0:  # extensions are optional before TLS 1.3
        return ()
    block = r.sub16()
    r.expect_end()
    return tuple([Extension(etype, data) for etype, data in block.u16_vec16_items()])


def _first(extensions: tuple[Extension, ...]) -> dict[int, bytes]:
    seen: dict[int, bytes] = {}
    for e in extensions:
        seen.setdefault(e.type, e.data)
    return seen


def _duplicates(extensions: tuple[Extension, ...]) -> list[str]:
    types = [e.type for e in extensions]
    if len(set(types)) == len(types):
        return []
    return sorted({f"duplicate_extension:{t}" for t in types if types.count(t) > 1})


def _sni(data: bytes) -> str | None:
    r = Reader(data)
    names = r.sub16()
    r.expect_end()
    while names.remaining:
        name_type = names.u8()
        name = names.vec16()
        if name_type == 0:
            # Host names are ASCII A-labels; keep anything else visible rather than guessing.
            return name.decode("ascii", "backslashreplace")
    return None


def _alpn_list(data: bytes) -> tuple[bytes, ...]:
    r = Reader(data)
    protos = r.sub16()
    r.expect_end()
    out = []
    while protos.remaining:
        out.append(protos.vec8())
    return tuple(out)


def _vec8_u16(data: bytes) -> tuple[int, ...]:
    r = Reader(data)
    values = u16_list(r.vec8())
    r.expect_end()
    return values


def _vec16_u16(data: bytes) -> tuple[int, ...]:
    r = Reader(data)
    values = u16_list(r.vec16())
    r.expect_end()
    return values


def _vec8_u8(data: bytes) -> tuple[int, ...]:
    r = Reader(data)
    values = tuple(r.vec8())
    r.expect_end()
    return values


def _key_share_groups(data: bytes) -> tuple[int, ...]:
    r = Reader(data)
    shares = r.sub16()
    r.expect_end()
    groups = []
    while shares.remaining:
        groups.append(shares.u16())
        shares.vec16()
    return tuple(groups)


def decode_client_hello(body: bytes) -> ClientHello:
    """Decode a ClientHello body (after the 4-byte handshake header).

    Raises :class:`DecodeError` if the fixed structure does not fit; malformed contents of
    individual extensions only add an anomaly.
    """
    r = Reader(body)
    legacy_version = r.u16()
    random = r.raw(32)
    session_id = r.vec8()
    if len(session_id) > 32:
        raise DecodeError("session_id longer than 32")
    cipher_suites = u16_list(r.vec16())
    compression = tuple(r.vec8())
    extensions = _decode_extensions(r)
    anomalies = _duplicates(extensions)
    ext = _first(extensions)
    fields: dict[str, object] = {}
    decoders = (
        (ExtensionType.SERVER_NAME, "server_name", _sni),
        (ExtensionType.ALPN, "alpn_protocols", _alpn_list),
        (ExtensionType.SUPPORTED_VERSIONS, "supported_versions", _vec8_u16),
        (ExtensionType.SUPPORTED_GROUPS, "supported_groups", _vec16_u16),
        (ExtensionType.EC_POINT_FORMATS, "ec_point_formats", _vec8_u8),
        (ExtensionType.SIGNATURE_ALGORITHMS, "signature_algorithms", _vec16_u16),
        (ExtensionType.KEY_SHARE, "key_share_groups", _key_share_groups),
    )
    for etype, field, decode in decoders:
        data = ext.get(etype)
        if data is None:
            continue
        try:
            fields[field] = decode(data)
        except DecodeError:
            anomalies.append(f"malformed_extension:{int(etype)}")
    return ClientHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suites=cipher_suites,
        compression_methods=compression,
        extensions=extensions,
        anomalies=tuple(anomalies),
        **fields,  # type: ignore[arg-type]
    )


def decode_sslv2_client_hello(record: bytes) -> ClientHello:
    """Decode an SSLv2-compatible CLIENT-HELLO from its record *payload* (after the 2-byte length).

    Layout (RFC 5246 Appendix E.2): msg_type(1) version(2) cipher_spec_length(2)
    session_id_length(2) challenge_length(2) cipher_specs session_id challenge.
    """
    r = Reader(record)
    if r.u8() != 1:
        raise DecodeError("not an SSLv2 CLIENT-HELLO")
    version = r.u16()
    spec_len = r.u16()
    sid_len = r.u16()
    challenge_len = r.u16()
    if spec_len % 3 or spec_len == 0:
        raise DecodeError("cipher_spec_length not a positive multiple of 3")
    specs_raw = r.raw(spec_len)
    session_id = r.raw(sid_len)
    challenge = r.raw(challenge_len)
    r.expect_end()
    if not 16 <= challenge_len <= 32 or sid_len not in (0, 16):
        raise DecodeError("bad challenge or session id length")
    specs = tuple(int.from_bytes(specs_raw[i : i + 3], "big") for i in range(0, spec_len, 3))
    # The challenge is right-aligned into the 32-byte TLS random (RFC 5246 E.2).
    random = challenge.rjust(32, b"\x00")
    return ClientHello(
        legacy_version=version,
        random=random,
        session_id=session_id,
        cipher_suites=tuple(s for s in specs if s < 0x10000),
        compression_methods=(0,),
        sslv2=True,
        cipher_specs=specs,
    )


def decode_server_hello(body: bytes) -> ServerHello:
    """Decode a ServerHello or HelloRetryRequest body. Raises :class:`DecodeError`."""
    r = Reader(body)
    legacy_version = r.u16()
    random = r.raw(32)
    session_id = r.vec8()
    if len(session_id) > 32:
        raise DecodeError("session_id longer than 32")
    cipher_suite = r.u16()
    compression = r.u8()
    extensions = _decode_extensions(r)
    is_hrr = random == HRR_RANDOM
    anomalies = _duplicates(extensions)
    ext = _first(extensions)
    selected_version: int | None = None
    alpn: bytes | None = None
    group: int | None = None
    data = ext.get(ExtensionType.SUPPORTED_VERSIONS)
    if data is not None:
        if len(data) == 2:
            selected_version = int.from_bytes(data, "big")
        else:
            anomalies.append("malformed_extension:43")
    data = ext.get(ExtensionType.ALPN)
    if data is not None:
        try:
            protos = _alpn_list(data)
            if len(protos) != 1:
                raise DecodeError("server must select exactly one protocol")
            alpn = protos[0]
        except DecodeError:
            anomalies.append("malformed_extension:16")
    data = ext.get(ExtensionType.KEY_SHARE)
    if data is not None:
        # HRR carries only the selected group; a ServerHello carries group + key_exchange.
        if len(data) >= 2:
            group = int.from_bytes(data[:2], "big")
        else:
            anomalies.append("malformed_extension:51")
    return ServerHello(
        legacy_version=legacy_version,
        random=random,
        session_id=session_id,
        cipher_suite=cipher_suite,
        compression_method=compression,
        extensions=extensions,
        is_hrr=is_hrr,
        selected_version=selected_version,
        alpn_protocol=alpn,
        key_share_group=group,
        anomalies=tuple(anomalies),
    )
