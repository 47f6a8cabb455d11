"""JA3/JA3S/JA4 against published vectors.

Sources:
* JA3: salesforce/ja3 README.md ("How it works"): two example strings and their MD5s.
* JA3S: the example from Salesforce's JA3S write-up, ``769,47,65281-0-11-35-5-16`` ->
  ``836ce314215654b5b1f85f97c73e506f`` (MD5 re-checked independently).
* JA4: FoxIO-LLC/ja4 technical_details/JA4.md ("Cipher hash", "Extension hash", "Example",
  "Raw Output"): the cipher/extension/signature lists and JA4, JA4_r, JA4_o, JA4_ro values.
The hellos below are built to carry exactly those lists (plus GREASE, which must vanish).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tlswatch.tls.fingerprints import ja3, ja3_string, ja3s, ja3s_string, ja4, ja4_o, ja4_r, ja4_ro
from tlswatch.tls.hello import ClientHello, decode_client_hello, decode_server_hello

from .tls_builders import (
    alpn_ext,
    client_hello_body,
    ext,
    groups_ext,
    point_formats_ext,
    server_hello_body,
    sigalgs_ext,
    sni_ext,
    versions_ext,
)

# --- JA3 -------------------------------------------------------------------------------------


def test_ja3_salesforce_example_with_grease_removed() -> None:
    ciphers = (0x2A2A, 47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4)
    body = client_hello_body(
        version=769,
        ciphers=ciphers,
        extensions=(
            sni_ext(b"a.example"),
            ext(0x3A3A),
            groups_ext(0x4A4A, 23, 24, 25),
            point_formats_ext(0),
        ),
    )
    hello = decode_client_hello(body)
    assert (
        ja3_string(hello) == "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0"
    )
    assert ja3(hello) == "ada70206e40642a3e4461f35503241d5"


def test_ja3_salesforce_example_without_extensions() -> None:
    body = client_hello_body(
        version=769, ciphers=(4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99), with_extensions_block=False
    )
    hello = decode_client_hello(body)
    assert ja3_string(hello) == "769,4-5-10-9-100-98-3-6-19-18-99,,,"
    assert ja3(hello) == "de350869b8c85de67a350c8d186f11e6"


def test_ja3s_example() -> None:
    exts = (
        ext(65281, b"\x00"),
        ext(0),
        ext(11, b"\x01\x00"),
        ext(35),
        ext(5),
        ext(16, b"\x00\x03\x02h2"),
    )
    sh = decode_server_hello(server_hello_body(version=769, cipher=47, extensions=exts))
    assert ja3s_string(sh) == "769,47,65281-0-11-35-5-16"
    assert ja3s(sh) == "836ce314215654b5b1f85f97c73e506f"


# --- JA4 -------------------------------------------------------------------------------------

SPEC_CIPHERS = (
    0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8,
    0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035,
)  # fmt: skip
SPEC_EXT_ORDER = (
    0x001B, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002D, 0x000D,
    0x0005, 0x0023, 0x0012, 0x002B, 0xFF01, 0x000B, 0x000A, 0x0015,
)  # fmt: skip
SPEC_SIGALGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)


def _spec_hello(with_sigalgs: bool = True) -> ClientHello:
    special = {
        0x0000: sni_ext(b"example.com"),
        0x0010: alpn_ext(b"h2", b"http/1.1"),
        0x002B: versions_ext(0x7A7A, 0x0304, 0x0303),
        0x000D: sigalgs_ext(0x0A0A, *SPEC_SIGALGS) if with_sigalgs else ext(0x000D, b"\x00\x00"),
        0x000A: groups_ext(0x1A1A, 0x001D, 0x0017),
        0x000B: point_formats_ext(0),
    }
    exts = [ext(0xDADA)] + [special.get(e, ext(e)) for e in SPEC_EXT_ORDER] + [ext(0x2A2A, b"\x00")]
    return decode_client_hello(client_hello_body(ciphers=(0xBABA, *SPEC_CIPHERS), extensions=exts))


def test_ja4_spec_example() -> None:
    hello = _spec_hello()
    assert ja4(hello) == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    assert ja4_r(hello) == (
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_"
        "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_"
        "0403,0804,0401,0503,0805,0501,0806,0601"
    )
    assert ja4_o(hello) == "t13d1516h2_acb858a92679_18f69afefd3d"
    assert ja4_ro(hello) == (
        "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_"
        "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015_"
        "0403,0804,0401,0503,0805,0501,0806,0601"
    )


def test_ja4_spec_no_signature_algorithms() -> None:
    # JA4.md: the sorted extension list alone hashes to 6d807ffa2a79.
    assert ja4(_spec_hello(with_sigalgs=False)).endswith("_6d807ffa2a79")


def test_ja4_a_section_variants() -> None:
    body = client_hello_body(version=0x0301, ciphers=(), with_extensions_block=False)
    assert ja4(decode_client_hello(body)) == "t10i000000_000000000000_000000000000"
    body = client_hello_body(extensions=(alpn_ext(b"http/1.1"),))
    assert ja4(decode_client_hello(body), protocol="q").startswith("q12i0201h1_")


def test_ja4_alpn_non_alphanumeric_uses_hex() -> None:
    # Examples from JA4.md "ALPN Extension Value".
    cases = {
        b"\xab": "ab",
        b"\xab\xcd": "ad",
        b"\x30\xab": "3b",
        b"\x30\x31\xab\xcd": "3d",
        b"\x30\xab\xcd\x31": "01",
        b"h": "hh",
    }
    for alpn, expected in cases.items():
        hello = decode_client_hello(client_hello_body(extensions=(alpn_ext(alpn),)))
        assert ja4(hello)[8:10] == expected, alpn


def test_ja4_counts_cap_at_99() -> None:
    hello = decode_client_hello(client_hello_body(ciphers=range(1, 150)))
    assert ja4(hello)[4:6] == "99"


def test_ja4_unknown_version_is_00() -> None:
    hello = decode_client_hello(client_hello_body(version=0x0305, with_extensions_block=False))
    assert ja4(hello)[1:3] == "00"


# --- memoisation ------------------------------------------------------------------------------

_U16 = st.integers(0, 0xFFFF) | st.sampled_from([0x0A0A, 0x1A1A, 0xFAFA, 0, 16, 43])


@settings(max_examples=200, deadline=None)
@given(
    legacy=st.sampled_from([0x0301, 0x0303, 0x0304, 0x7F7F]),
    ciphers=st.lists(_U16, max_size=8).map(tuple),
    exts=st.lists(_U16, max_size=8).map(tuple),
    groups=st.lists(_U16, max_size=4).map(tuple),
    formats=st.lists(st.integers(0, 255), max_size=3).map(tuple),
    versions=st.lists(_U16, max_size=3).map(tuple),
    sigs=st.lists(_U16, max_size=4).map(tuple),
    alpn=st.lists(st.binary(max_size=4), max_size=3).map(tuple),
)
def test_memoised_fingerprints_equal_a_fresh_computation(
        legacy: int, ciphers: tuple[int, ...], exts: tuple[int, ...], groups: tuple[int, ...],
        formats: tuple[int, ...], versions: tuple[int, ...], sigs: tuple[int, ...],
        alpn: tuple[bytes, ...]) -> None:
    import hashlib

    from tlswatch.tls.fingerprints import _ja4_compute
    from tlswatch.tls.hello import Extension

    hello = ClientHello(legacy, b"r" * 32, b"", ciphers,
                        extensions=tuple(Extension(t, b"x") for t in exts),
                        alpn_protocols=alpn, supported_versions=versions,
                        supported_groups=groups, ec_point_formats=formats,
                        signature_algorithms=sigs)
    for _ in range(2):  # first computed, then from the cache
        assert ja3(hello) == hashlib.md5(ja3_string(hello).encode()).hexdigest()
        for fn, original, raw in ((ja4, False, False), (ja4_r, False, True),
                                  (ja4_o, True, False), (ja4_ro, True, True)):
            assert fn(hello) == _ja4_compute(hello, "t", original, raw)
            assert fn(hello, "q") == _ja4_compute(hello, "q", original, raw)
