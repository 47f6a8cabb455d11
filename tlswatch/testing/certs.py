"""Deterministic certificate factory and chain scenarios (see ``tlswatch.testing``)."""

from __future__ import annotations

import hashlib
import ipaddress
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tlswatch.testing.keys import (
    EC_P256,
    RSA_2048,
    RSA_2048_E3,
    RSA_4096,
    KeySpec,
    PrivateKey,
    derive_key,
)

__all__ = [
    "FIXED_NOW",
    "KZ_ROOT_SUBJECT",
    "KZ_SECURITY_SUBJECT",
    "CertFactory",
    "Issued",
    "Scenario",
    "forge_2019",
    "real_qaznet_root",
    "real_qaznet_root_path",
    "to_pem",
    "write_store_pem",
]

#: The default clock of the test kit (mid-2019, during the Kazakhstan interception).
FIXED_NOW = datetime(2019, 8, 1, 12, 0, tzinfo=UTC)

KZ_ROOT_SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "KZ"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Qaznet Trust Network"),
    ]
)
KZ_SECURITY_SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "KZ"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Security Certificate"),
    ]
)
# Validity of the real Qaznet root (sha256 00309c73…), copied so the test root looks alike.
_KZ_ROOT_NOT_BEFORE = datetime(2016, 2, 2, 5, 41, tzinfo=UTC)
_KZ_ROOT_NOT_AFTER = datetime(2046, 2, 2, 5, 41, tzinfo=UTC)

_PUBLIC_ROOT = "C=US,O=tlswatch test PKI,CN=tlswatch Test Root R1"
_PUBLIC_CA = "C=US,O=tlswatch test PKI,CN=tlswatch Test CA 1"
_KZ_ROOT_FILE = "kz-2019-qaznet-root.pem"


def _name(subject: str | x509.Name) -> x509.Name:
    return subject if isinstance(subject, x509.Name) else x509.Name.from_rfc4514_string(subject)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate together with its private key."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True, slots=True)
class Scenario:
    """A presented chain (leaf first), the roots of the "public" store, and the expected result.

    ``expect`` is ``"valid"`` or the primary error ``tlswatch.x509.validate`` should report
    against a store holding exactly ``roots``, for ``host`` at time ``at``.
    """

    name: str
    chain: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]
    host: str
    at: datetime
    expect: str
    leaf_key: PrivateKey | None = None


def to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """Concatenated PEM of ``certs``."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def write_store_pem(path: str | Path, roots: Iterable[x509.Certificate]) -> Path:
    """Write ``roots`` as a PEM bundle (a trust store file) and return the path."""
    out = Path(path)
    out.write_bytes(to_pem(roots))
    return out


def real_qaznet_root_path() -> Path | None:
    """The real 2019 Qaznet root certificate shipped in the repository's ``trust_anchors/``."""
    repo = Path(__file__).resolve().parents[2]
    for cand in (
        repo / "trust_anchors" / "interception_cas" / _KZ_ROOT_FILE,
        # A checkout inside the shared workspace, before trust_anchors/ is populated.
        repo.parent / "shared" / "data" / "interception_cas" / _KZ_ROOT_FILE,
    ):
        if cand.is_file():
            return cand
    return None


def real_qaznet_root() -> x509.Certificate | None:
    """The real Qaznet Trust Network root (public certificate only), or None if not shipped."""
    path = real_qaznet_root_path()
    return None if path is None else x509.load_pem_x509_certificate(path.read_bytes())


def _sign(builder: x509.CertificateBuilder, key: PrivateKey) -> x509.Certificate:
    # RFC 6979 deterministic ECDSA (RSA PKCS#1 v1.5 is deterministic anyway), so the same
    # seed gives byte-identical certificates across runs and machines.
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    return builder.sign(key, hashes.SHA256())


def _host_of(cert: x509.Certificate) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        if dns:
            return dns[0]
        ips = san.get_values_for_type(x509.IPAddress)
        if ips:
            return str(ips[0])
    except x509.ExtensionNotFound:
        pass
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert.subject.rfc4514_string()


def forge_2019(
    origin_leaf: x509.Certificate,
    intermediate_cert: x509.Certificate,
    intermediate_key: PrivateKey,
    rng: random.Random,
    *,
    seed: int = 0,
    host: str | None = None,
) -> x509.Certificate:
    """Forge a leaf the way the 2019 Kazakhstan middlebox did (IMC 2020, Raman et al.).

    Copies the origin's subject and SubjectAlternativeName (nothing else), uses the
    host-specific RSA-2048 e=3 key ``derive_key(seed, "kz2019-host:" + host, RSA_2048_E3)``
    (host defaults to the origin's first SAN), shifts the validity 6 hours earlier and
    randomises the low 33 bits of the origin's serial with ``rng``.
    """
    host = host or _host_of(origin_leaf)
    key = derive_key(seed, "kz2019-host:" + host.lower(), RSA_2048_E3)
    low = (1 << 33) - 1
    serial = 0
    while serial <= 0:  # a serial must be positive; retry the (rare) zero
        serial = (origin_leaf.serial_number & ~low) | rng.getrandbits(33)
    shift = timedelta(hours=6)
    builder = (
        x509.CertificateBuilder()
        .subject_name(origin_leaf.subject)
        .issuer_name(intermediate_cert.subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(origin_leaf.not_valid_before_utc - shift)
        .not_valid_after(origin_leaf.not_valid_after_utc - shift)
    )
    try:
        san = origin_leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=san.critical)
    except x509.ExtensionNotFound:
        pass
    return _sign(builder, intermediate_key)


class CertFactory:
    """Deterministic certificates: the same seed and arguments give the same bytes.

    Every time is explicit; defaults are derived from ``now`` (never the wall clock).
    """

    def __init__(self, seed: int = 0, now: datetime = FIXED_NOW) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.seed = seed
        self.now = now

    # -- building blocks -------------------------------------------------------------

    def key(self, name: str, spec: KeySpec = EC_P256) -> PrivateKey:
        """The seeded key called ``name``."""
        return derive_key(self.seed, name, spec)

    def serial(self, *parts: str) -> int:
        """A positive 127-bit serial derived from the seed and ``parts``."""
        digest = hashlib.sha256("|".join((str(self.seed), *parts)).encode()).digest()
        return int.from_bytes(digest[:16], "big") >> 1 or 1

    def _build(
        self,
        subject: x509.Name,
        issuer: Issued | None,
        key: PrivateKey,
        not_before: datetime,
        not_after: datetime,
        extensions: Sequence[tuple[x509.ExtensionType, bool]],
        serial: int | None,
    ) -> Issued:
        signer = key if issuer is None else issuer.key
        issuer_name = subject if issuer is None else issuer.cert.subject
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(
                serial
                if serial is not None
                else self.serial(
                    subject.rfc4514_string(), issuer_name.rfc4514_string(), not_before.isoformat()
                )
            )
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        for ext, critical in extensions:
            builder = builder.add_extension(ext, critical=critical)
        return Issued(_sign(builder, signer), key)

    @staticmethod
    def _ca_extensions(
        key: PrivateKey, issuer: Issued | None, path_length: int | None
    ) -> list[tuple[x509.ExtensionType, bool]]:
        exts: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=True, path_length=path_length), True),
            (
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        ]
        if issuer is not None:
            exts.append((_aki(issuer), False))
        return exts

    def root(
        self,
        subject: str | x509.Name,
        *,
        key: KeySpec = EC_P256,
        key_name: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        path_length: int | None = None,
    ) -> Issued:
        """A self-signed CA certificate (default validity: now-1y … now+10y)."""
        name = _name(subject)
        priv = self.key(key_name or "root:" + name.rfc4514_string(), key)
        return self._build(
            name,
            None,
            priv,
            not_before or self.now - timedelta(days=365),
            not_after or self.now + timedelta(days=3650),
            self._ca_extensions(priv, None, path_length),
            None,
        )

    def intermediate(
        self,
        subject: str | x509.Name,
        issuer: Issued,
        *,
        key: KeySpec = EC_P256,
        key_name: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        path_length: int | None = 0,
    ) -> Issued:
        """A CA certificate issued by ``issuer`` (default validity: now-180d … now+5y)."""
        name = _name(subject)
        priv = self.key(key_name or "ca:" + name.rfc4514_string(), key)
        return self._build(
            name,
            issuer,
            priv,
            not_before or self.now - timedelta(days=180),
            not_after or self.now + timedelta(days=1825),
            self._ca_extensions(priv, issuer, path_length),
            None,
        )

    def leaf(
        self,
        issuer: Issued | None,
        hosts: Sequence[str],
        *,
        subject: str | x509.Name | None = None,
        key: KeySpec = EC_P256,
        key_name: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        serial: int | None = None,
    ) -> Issued:
        """A TLS server certificate with Web-PKI extensions; ``issuer=None`` self-signs it.

        ``hosts`` become SAN entries (IP literals as IP addresses); the subject defaults to
        ``CN=<hosts[0]>``. Default validity: now-30d … now+60d.
        """
        if not hosts:
            raise ValueError("a leaf needs at least one host")
        name = (
            _name(subject)
            if subject is not None
            else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
        )
        priv = self.key(key_name or "leaf:" + ",".join(hosts), key)
        exts: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=isinstance(priv, rsa.RSAPrivateKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.SubjectAlternativeName([_general_name(h) for h in hosts]), False),
            (x509.SubjectKeyIdentifier.from_public_key(priv.public_key()), False),
        ]
        # Self-signed leaves carry AKI = own key too (as `openssl req -x509` makes them).
        exts.append(
            (
                _aki(issuer)
                if issuer is not None
                else x509.AuthorityKeyIdentifier.from_issuer_public_key(priv.public_key()),
                False,
            )
        )
        return self._build(
            name,
            issuer,
            priv,
            not_before or self.now - timedelta(days=30),
            not_after or self.now + timedelta(days=60),
            exts,
            serial,
        )

    # -- the fixed test PKIs ---------------------------------------------------------

    def public_root(self) -> Issued:
        """The root of the "public" test PKI (goes into the test trust store)."""
        return self.root(_PUBLIC_ROOT)

    def public_ca(self) -> Issued:
        """The intermediate of the "public" test PKI."""
        return self.intermediate(_PUBLIC_CA, self.public_root(), path_length=None)

    def kz_root(self) -> Issued:
        """Our own RSA-4096 ``C=KZ, CN=Qaznet Trust Network`` root (same name, not the real key)."""
        return self.root(
            KZ_ROOT_SUBJECT,
            key=RSA_4096,
            key_name="kz2019-root",
            not_before=_KZ_ROOT_NOT_BEFORE,
            not_after=_KZ_ROOT_NOT_AFTER,
        )

    def kz_intermediate(self) -> Issued:
        """The RSA-2048 ``C=KZ, CN=Security Certificate`` CA, issued by :meth:`kz_root`."""
        return self.intermediate(
            KZ_SECURITY_SUBJECT,
            self.kz_root(),
            key=RSA_2048,
            key_name="kz2019-security",
            not_before=_KZ_ROOT_NOT_BEFORE,
            not_after=_KZ_ROOT_NOT_AFTER,
        )

    def forge_2019(
        self, origin_leaf: x509.Certificate, *, host: str | None = None
    ) -> x509.Certificate:
        """:func:`forge_2019` with the test KZ intermediate and an rng seeded by seed+origin."""
        rng = random.Random(f"{self.seed}|{origin_leaf.serial_number}|{host}")
        ca = self.kz_intermediate()
        return forge_2019(origin_leaf, ca.cert, ca.key, rng, seed=self.seed, host=host)

    # -- scenarios -----------------------------------------------------------------

    def _scenario(
        self,
        name: str,
        leaf: Issued,
        rest: Sequence[x509.Certificate],
        host: str,
        expect: str,
        at: datetime | None = None,
    ) -> Scenario:
        return Scenario(
            name=name,
            chain=(leaf.cert, *rest),
            roots=(self.public_root().cert,),
            host=host,
            at=at or self.now,
            expect=expect,
            leaf_key=leaf.key,
        )

    def legitimate(self, host: str = "example.com") -> Scenario:
        """leaf → public CA → public root (root not sent, as servers do)."""
        ca = self.public_ca()
        return self._scenario("legitimate", self.leaf(ca, [host]), [ca.cert], host, "valid")

    def expired(self, host: str = "example.com") -> Scenario:
        """A leaf whose validity ended a day before ``now``."""
        ca = self.public_ca()
        leaf = self.leaf(
            ca,
            [host],
            not_before=self.now - timedelta(days=91),
            not_after=self.now - timedelta(days=1),
        )
        return self._scenario("expired", leaf, [ca.cert], host, "expired")

    def not_yet_valid(self, host: str = "example.com") -> Scenario:
        """A leaf whose validity starts a day after ``now``."""
        ca = self.public_ca()
        leaf = self.leaf(
            ca,
            [host],
            not_before=self.now + timedelta(days=1),
            not_after=self.now + timedelta(days=91),
        )
        return self._scenario("not_yet_valid", leaf, [ca.cert], host, "not_yet_valid")

    def wrong_host(self, host: str = "example.com") -> Scenario:
        """A valid chain for a different name than ``host``."""
        ca = self.public_ca()
        leaf = self.leaf(ca, ["other.example.net"])
        return self._scenario("wrong_host", leaf, [ca.cert], host, "hostname_mismatch")

    def self_signed(self, host: str = "example.com") -> Scenario:
        """A single self-signed leaf."""
        leaf = self.leaf(None, [host], key_name="self-signed:" + host)
        return self._scenario("self_signed", leaf, [], host, "self_signed")

    def incomplete_chain(self, host: str = "example.com") -> Scenario:
        """The server forgot the intermediate: only the leaf is presented."""
        leaf = self.leaf(self.public_ca(), [host])
        return self._scenario("incomplete_chain", leaf, [], host, "incomplete_chain")

    def shuffled_chain(self, host: str = "example.com") -> Scenario:
        """Intermediates out of order, duplicated, with an unrelated cert and the root mixed in."""
        root = self.public_root()
        ca = self.public_ca()
        ca2 = self.intermediate("C=US,O=tlswatch test PKI,CN=tlswatch Test CA 2", ca)
        junk = self.root("CN=Unrelated Junk Root").cert
        leaf = self.leaf(ca2, [host])
        rest = [junk, ca.cert, ca2.cert, ca.cert, root.cert, junk]
        return self._scenario("shuffled_chain", leaf, rest, host, "valid")

    def forged_2019(self, host: str = "facebook.com", *, include_root: bool = True) -> Scenario:
        """The 2019 KZ forgery of a legitimate leaf; the test Qaznet root is sent when asked."""
        origin = self.leaf(self.public_ca(), [host, "www." + host])
        forged = self.forge_2019(origin.cert, host=host)
        rest = [self.kz_intermediate().cert]
        if include_root:
            rest.append(self.kz_root().cert)
        return Scenario(
            name="forged_2019" if include_root else "forged_2019_no_root",
            chain=(forged, *rest),
            roots=(self.public_root().cert,),
            host=host,
            at=self.now,
            expect="untrusted_root" if include_root else "incomplete_chain",
            leaf_key=derive_key(self.seed, "kz2019-host:" + host.lower(), RSA_2048_E3),
        )

    def forged_random_ca(self, host: str = "facebook.com") -> Scenario:
        """A forgery by a CA with a seed-derived random name that is in no registry."""
        rng = random.Random(f"random-ca|{self.seed}")
        label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(10))
        root = self.root(f"O={label.title()} Ltd,CN={label.title()} Root CA")
        ca = self.intermediate(f"O={label.title()} Ltd,CN={label.title()} Issuing CA", root)
        leaf = self.leaf(ca, [host], key_name="random-ca-leaf:" + host)
        return Scenario(
            name="forged_random_ca",
            chain=(leaf.cert, ca.cert, root.cert),
            roots=(self.public_root().cert,),
            host=host,
            at=self.now,
            expect="untrusted_root",
            leaf_key=leaf.key,
        )

    def real_qaznet_root_chain(self, host: str = "facebook.com") -> Scenario:
        """The forgery with the *real* Qaznet root appended instead of our test root.

        Our test intermediate only matches the real root by name: its signature does not
        verify under the real key, so the validator reports ``invalid`` (naming ``Qaznet
        Trust Network`` as the issuer that failed). A classifier still sees the real root's
        fingerprint in the presented chain.
        """
        real = real_qaznet_root()
        if real is None:
            raise FileNotFoundError(_KZ_ROOT_FILE + " not found in trust_anchors/interception_cas")
        base = self.forged_2019(host, include_root=False)
        return Scenario(
            name="real_qaznet_root",
            chain=(*base.chain, real),
            roots=base.roots,
            host=host,
            at=self.now,
            expect="invalid",
            leaf_key=base.leaf_key,
        )

    def scenarios(self, host: str = "example.com") -> tuple[Scenario, ...]:
        """Every scenario above that needs no RSA-4096 key (fast); see also forged_2019."""
        return (
            self.legitimate(host),
            self.expired(host),
            self.not_yet_valid(host),
            self.wrong_host(host),
            self.self_signed(host),
            self.incomplete_chain(host),
            self.shuffled_chain(host),
            self.forged_random_ca(host),
        )


def _aki(issuer: Issued) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
