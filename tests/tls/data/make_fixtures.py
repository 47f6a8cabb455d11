"""Regenerate the TLS transcripts in this folder: ``python tests/tls/data/make_fixtures.py``.

Runs a real handshake between Python's ``ssl`` client and server over memory BIOs (no
sockets, no network) with a fresh self-signed certificate, and writes, per transcript:

* ``<name>.transcript`` - one line per flight, ``c <hex>`` (client to server) or ``s <hex>``,
  in the order the bytes were produced;
* ``server_cert.der`` - the certificate the server presents (leaf, shared by all transcripts).

The bytes differ on every run (randoms, keys); tests check structure, not exact bytes.
"""

from __future__ import annotations

import datetime
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).parent
HOSTNAME = "example.test"


def make_cert(tmp: Path) -> tuple[Path, Path, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOSTNAME)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


def run(cert: Path, key: Path, max_version: ssl.TLSVersion) -> list[tuple[str, bytes]]:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.set_alpn_protocols(["h2", "http/1.1"])
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.maximum_version = max_version
    client_ctx.set_alpn_protocols(["h2", "http/1.1"])

    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=HOSTNAME)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    flights: list[tuple[str, bytes]] = []

    def pump() -> None:
        for side, src, dst in (("c", c_out, s_in), ("s", s_out, c_in)):
            data = src.read()
            if data:
                flights.append((side, data))
                dst.write(data)

    done = {"c": False, "s": False}
    for _ in range(20):
        for side, obj in (("c", client), ("s", server)):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
            pump()
        if all(done.values()):
            break
    client.write(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
    pump()
    server.read(4096)
    server.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    pump()
    client.read(4096)
    pump()
    return flights


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cert, key, der = make_cert(Path(tmp))
        (HERE / "server_cert.der").write_bytes(der)
        for name, version in (("tls12", ssl.TLSVersion.TLSv1_2), ("tls13", ssl.TLSVersion.TLSv1_3)):
            flights = run(cert, key, version)
            lines = [f"{side} {data.hex()}" for side, data in flights]
            (HERE / f"{name}.transcript").write_text("\n".join(lines) + "\n")
            print(name, [(s, len(d)) for s, d in flights])


if __name__ == "__main__":
    main()
