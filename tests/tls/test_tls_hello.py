from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlswatch.tls.events import ClientHelloEvent
from tlswatch.tls.hello import (
    HRR_RANDOM,
    DecodeError,
    decode_client_hello,
    decode_server_hello,
    decode_sslv2_client_hello,
    is_grease,
)
from tlswatch.tls.parser import TLSParser

from .tls_builders import (
    alpn_ext,
    client_hello_body,
    ext,
    groups_ext,
    key_share_ext,
    point_formats_ext,
    server_hello_body,
    side_stream,
    sigalgs_ext,
    sni_ext,
    sslv2_hello,
    versions_ext,
)


def _full_hello() -> bytes:
    return client_hello_body(
        ciphers=(0x0A0A, 0x1301, 0xC02F),
        session_id=b"\x05" * 32,
        extensions=(
            ext(0x1A1A),
            sni_ext(b"example.org"),
            alpn_ext(b"h2", b"http/1.1"),
            versions_ext(0x2A2A, 0x0304, 0x0303),
            groups_ext(0x001D, 0x0017),
            point_formats_ext(0),
            sigalgs_ext(0x0403, 0x0804),
            key_share_ext(0x001D),
        ),
    )


def test_client_hello_fields() -> None:
    h = decode_client_hello(_full_hello())
    assert h.legacy_version == 0x0303
    assert h.random == b"\x01" * 32
    assert h.session_id == b"\x05" * 32
    assert h.cipher_suites == (0x0A0A, 0x1301, 0xC02F)
    assert h.compression_methods == (0,)
    assert h.extension_types == (0x1A1A, 0, 16, 43, 10, 11, 13, 51)
    assert h.extensions[1].data[-11:] == b"example.org"
    assert h.server_name == "example.org"
    assert h.alpn_protocols == (b"h2", b"http/1.1")
    assert h.supported_versions == (0x2A2A, 0x0304, 0x0303)
    assert h.max_version == 0x0304
    assert h.supported_groups == (0x1D, 0x17)
    assert h.ec_point_formats == (0,)
    assert h.signature_algorithms == (0x0403, 0x0804)
    assert h.key_share_groups == (0x1D,)
    assert h.anomalies == ()
    assert not h.sslv2


def test_client_hello_without_extensions_block() -> None:
    h = decode_client_hello(client_hello_body(with_extensions_block=False, version=0x0301))
    assert h.extensions == ()
    assert h.max_version == 0x0301
    assert h.server_name is None


def test_malformed_extension_is_an_anomaly_not_a_failure() -> None:
    body = client_hello_body(extensions=(ext(0, b"\x00\x09\x00"), ext(16, b"\x01"), ext(0, b"")))
    h = decode_client_hello(body)
    assert h.server_name is None
    assert "malformed_extension:0" in h.anomalies
    assert "malformed_extension:16" in h.anomalies
    assert "duplicate_extension:0" in h.anomalies


def test_non_ascii_sni_stays_visible() -> None:
    h = decode_client_hello(client_hello_body(extensions=(sni_ext("bücher.de".encode()),)))
    assert h.server_name == "b\\xc3\\xbccher.de"


@pytest.mark.parametrize("cut", [0, 1, 2, 20, 34, 35, 38, 40, 41])
def test_truncated_client_hello_raises_decode_error(cut: int) -> None:
    with pytest.raises(DecodeError):
        decode_client_hello(_full_hello()[:cut])


def test_trailing_garbage_is_malformed() -> None:
    with pytest.raises(DecodeError):
        decode_client_hello(_full_hello() + b"\x00")


def test_real_client_hellos() -> None:
    for name, version in (("tls12", 0x0303), ("tls13", 0x0304)):
        ev = TLSParser("client").feed(side_stream(name, "c"))[0]
        assert isinstance(ev, ClientHelloEvent)
        h = ev.hello
        assert h.server_name == "example.test"
        assert h.alpn_protocols == (b"h2", b"http/1.1")
        assert h.max_version == version
        assert h.anomalies == ()
        if name == "tls13":
            assert 0x0304 in h.supported_versions
            assert h.key_share_groups


def test_server_hello_tls12() -> None:
    s = decode_server_hello(
        server_hello_body(cipher=0xC02F, extensions=(alpn_ext(b"h2"), ext(0xFF01, b"\x00")))
    )
    assert s.version == 0x0303
    assert s.selected_version is None
    assert s.cipher_suite == 0xC02F
    assert s.alpn_protocol == b"h2"
    assert not s.is_hrr


def test_server_hello_tls13_version_from_extension() -> None:
    body = server_hello_body(
        extensions=(ext(43, b"\x03\x04"), ext(51, b"\x00\x1d" + b"\x00\x20" + b"k" * 32))
    )
    s = decode_server_hello(body)
    assert s.legacy_version == 0x0303
    assert s.version == 0x0304
    assert s.key_share_group == 0x1D


def test_hello_retry_request_detected() -> None:
    body = server_hello_body(
        random=HRR_RANDOM, extensions=(ext(43, b"\x03\x04"), ext(51, b"\x00\x17"))
    )
    s = decode_server_hello(body)
    assert s.is_hrr
    assert s.key_share_group == 0x17


def test_server_alpn_must_be_single() -> None:
    s = decode_server_hello(server_hello_body(extensions=(alpn_ext(b"h2", b"h3"),)))
    assert s.alpn_protocol is None
    assert s.anomalies == ("malformed_extension:16",)


def test_sslv2_client_hello() -> None:
    raw = sslv2_hello(version=0x0301, specs=(0x010080, 0x000035, 0x00002F), challenge=b"\x07" * 16)
    h = decode_sslv2_client_hello(raw[2:])
    assert h.sslv2
    assert h.legacy_version == 0x0301
    assert h.cipher_specs == (0x010080, 0x000035, 0x00002F)
    assert h.cipher_suites == (0x35, 0x2F)
    assert h.random == b"\x00" * 16 + b"\x07" * 16
    assert h.extensions == ()


@pytest.mark.parametrize(
    "raw",
    [
        sslv2_hello(specs=())[2:],
        sslv2_hello(challenge=b"\x01" * 8)[2:],
        sslv2_hello()[2:-1],
        b"\x02" + sslv2_hello()[3:],
    ],
)
def test_sslv2_malformed(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_sslv2_client_hello(raw)


def test_grease() -> None:
    greases = [0x0A0A + 0x1010 * i for i in range(16)]
    assert all(is_grease(g) for g in greases)
    assert not any(is_grease(v) for v in (0x0A1A, 0x1301, 0x0000, 0xFF01, 0x0A0B))


# --- the reader's one-pass paths read exactly what field-by-field reads would ----------------


def _field_by_field(data: bytes) -> list[tuple[int, bytes]] | str:
    from tlswatch.tls._reader import Reader

    r, out = Reader(data), []
    try:
        while r.remaining:
            out.append((r.u16(), r.vec16()))
    except DecodeError as e:
        return str(e)
    return out


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(
    max_size=5))).map(lambda items: b"".join(
        t.to_bytes(2, "big") + len(d).to_bytes(2, "big") + d for t, d in items)))
def test_u16_vec16_items_matches_field_by_field(data: bytes) -> None:
    from tlswatch.tls._reader import Reader, u16_list

    expected = _field_by_field(data)
    try:
        got: list[tuple[int, bytes]] | str = Reader(data).u16_vec16_items()
    except DecodeError as e:
        got = str(e)
    assert got == expected
    if len(data) % 2 == 0:
        assert u16_list(data) == tuple(int.from_bytes(data[i:i + 2], "big")
                                       for i in range(0, len(data), 2))
