from __future__ import annotations

import pytest

from tlswatch.tls.certificate import DecodeError, decode_certificate

from .tls_builders import DATA, certificate_body, vec24


def test_tls12_certificate_list_leaf_first() -> None:
    leaf = (DATA / "server_cert.der").read_bytes()
    m = decode_certificate(certificate_body([leaf, b"inter", b"root"]))
    assert m.certificates == (leaf, b"inter", b"root")
    assert not m.tls13


def test_tls13_form_with_context_and_entry_extensions() -> None:
    body = certificate_body([b"leaf", b"ca"], tls13=True, context=b"\x01\x02")
    m = decode_certificate(body, tls13=True)
    assert m.certificates == (b"leaf", b"ca")
    assert m.request_context == b"\x01\x02"
    assert m.entry_extensions == (b"", b"")
    assert m.tls13


def test_empty_list_is_allowed() -> None:
    assert decode_certificate(vec24(b"")).certificates == ()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00\x00\x05abc",  # list longer than message
        vec24(vec24(b"")),  # empty certificate entry
        vec24(b"\x00\x00\x09abc"),  # entry longer than list
        certificate_body([b"x"]) + b"\x00",  # trailing byte
    ],
)
def test_malformed(body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_certificate(body)


def test_tls12_layout_read_as_tls13_fails() -> None:
    with pytest.raises(DecodeError):
        decode_certificate(certificate_body([b"leaf"]), tls13=True)
