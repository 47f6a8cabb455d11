"""tlswatch.testing.transcripts: the key schedule against RFC 8448, the TLS 1.2 PRF against
the IETF vector, signatures, and determinism.

RFC 8448 ("Example Handshake Traces for TLS 1.3", M. Thomson, January 2019), §3 "Simple 1-RTT
Handshake": TLS_AES_128_GCM_SHA256 with X25519. Values below are copied from that section
(https://www.rfc-editor.org/rfc/rfc8448#section-3). They check one another: the private keys
must give the published shared secret, and sealing the published plaintexts with the derived
keys must reproduce the published records byte for byte (AES-GCM tags included).
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tlswatch.testing import RSA_2048_E3, CertFactory, derive_key
from tlswatch.testing.transcripts import (
    ALERT_HANDSHAKE_FAILURE,
    HRR_RANDOM,
    TLS12_ECDHE_ECDSA_AES128_GCM,
    TLS12_ECDHE_RSA_AES128_GCM,
    TLS_AES_128_GCM_SHA256,
    TLS_AES_256_GCM_SHA384,
    TLS_CHACHA20_POLY1305_SHA256,
    Transcript,
    alert_record,
    client_hello_only,
    derive_secret,
    early_secret,
    finished_verify_data,
    handshake_secret,
    hkdf_expand_label,
    master_secret,
    pss_sign,
    seal_tls13_record,
    tls12_handshake,
    tls12_prf,
    tls13_handshake,
    traffic_key_iv,
    transcript_hash,
)

SHA256 = hashes.SHA256()


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# -- RFC 8448 §3 ---------------------------------------------------------------------------------

CLIENT_PRIVATE = h("49af42ba7f7994852d713ef2784bcbcaa7911de26adc5642cb634540e7ea5005")
SERVER_PRIVATE = h("b1580eeadf6dd589b8ef4f2d5652578cc810e9980191ec8d058308cea216a21e")
SHARED_SECRET = h("8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d")
CLIENT_HELLO = h(
    """
    010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece700000613011303
    1302010000910000000b0009000006736572766572ff01000100000a00140012001d0017001800190100010101
    020103010400230000003300260024001d002099381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413
    691e529aaf2c002b0003020304000d0020001e040305030603020308040805080604010501060102010402050206
    020202002d00020101001c00024001
    """
)
SERVER_HELLO = h(
    """
    020000560303a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e2692800130100002e00
    330024001d0020c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f002b00020304
    """
)
# EncryptedExtensions, Certificate, CertificateVerify, Finished: the server's flight, 657 bytes.
SERVER_FLIGHT = h(
    """
    080000240022000a00140012001d00170018001901000101010201030104001c00024001000000000b0001b900
    0001b50001b0308201ac30820115a003020102020102300d06092a864886f70d01010b0500300e310c300a0603
    5504031303727361301e170d3136303733303031323335395a170d3236303733303031323335395a300e310c30
    0a06035504031303727361 30819f300d06092a864886f70d010101050003818d0030818902818100b4bb498f82
    79303d980836399b36c6988c0c68de55e1bdb826d3901a2461eafd2de49a91d015abbc9a95137ace6c1af19eaa
    6af98c7ced43120998e187a80ee0ccb0524b1b018c3e0b63264d449a6d38e22a5fda430846748030530ef0461c
    8ca9d9efbfae8ea6d1d03e2bd193eff0ab9a8002c47428a6d35a8d88d79f7f1e3f0203010001a31a3018300906
    03551d1304023000300b0603551d0f0404030205a0300d06092a864886f70d01010b05000381810085aad2a0e5
    b9276b908c65f73a7267170618a54c5f8a7b337d2df7a594365417f2eae8f8a58c8f8172f9319cf36b7fd6c55b
    80f21a03015156726096fd335e5e67f2dbf102702e608ccae6bec1fc63a42a99be5c3eb7107c3c54e9b9eb2bd5
    203b1c3b84e0a8b2f759409ba3eac9d91d402dcc0cc8f8961229ac9187b42b4de100000f000084080400805a74
    7c5d88fa9bd2e55ab085a61015b7211f824cd484145ab3ff52f1fda8477b0b7abc90db78e2d33a5c141a078653
    fa6bef780c5ea248eeaaa785c4f394cab6d30bbe8d4859ee511f602957b15411ac027671459e46445c9ea58c18
    1e818e95b8c3fb0bf3278409d3be152a3da5043e063dda65cdf5aea20d53dfacd42f74f3140000209b9b141d90
    6337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718
    """
)
SERVER_FLIGHT_RECORD = h(
    """
    17030302a2d1ff334a56f5bff6594a07cc87b580233f500f45e489e7f33af35edf7869fcf40aa40aa2b8ea73f8
    48a7ca07612ef9f945cb960b4068905123ea78b111b429ba9191cd05d2a389280f526134aadc7fc78c4b729df8
    28b5ecf7b13bd9aefb0e57f271585b8ea9bb355c7c79020716cfb9b1183ef3ab20e37d57a6b9d7477609aee6e1
    22a4cf51427325250c7d0e509289444c9b3a648f1d71035d2ed65b0e3cdd0cbae8bf2d0b227812cbb360987255
    cc744110c453baa4fcd610928d809810e4b7ed1a8fd991f06aa6248204797e36a6a73b70a2559c09ead686945b
    a246ab66e5edd8044b4c6de3fcf2a89441ac66272fd8fb330ef8190579b3684596c960bd596eea520a56a8d650
    f563aad27409960dca63d3e688611ea5e22f4415cf9538d51a200c27034272968a264ed6540c84838d89f72c24
    461aad6d26f59ecaba9acbbb317b66d902f4f292a36ac1b639c637ce343117b659622245317b49eeda0c6258f1
    00d7d961ffb138647e92ea330faeea6dfa31c7a84dc3bd7e1b7a6c7178af36879018e3f252107f243d243dc733
    9d5684c8b0378bf30244da8c87c843f5e56eb4c5e8280a2b48052cf93b16499a66db7cca71e4599426f7d461e6
    6f99882bd89fc50800becca62d6c74116dbd2972fda1fa80f85df881edbe5a37668936b335583b599186dc5c69
    18a396fa48a181d6b6fa4f9d62d513afbb992f2b992f67f8afe67f76913fa388cb5630c8ca01e0c65d11c66a1e
    2ac4c85977b7c7a6999bbf10dc35ae69f5515614636c0b9b68c19ed2e31c0b3b66763038ebba42f3b38edc0399
    f3a9f23faa63978c317fc9fa66a73f60f0504de93b5b845e275592c12335ee340bbc4fddd502784016e4b3be7e
    f04dda49f4b440a30cb5d2af939828fd4ae3794e44f94df5a631ede42c1719bfdabf0253fe5175be898e750edc
    53370d2b
    """
)
CLIENT_FINISHED_RECORD = h(
    """
    170303003575ec4dc238cce60b298044a71e219c56cc77b0517fe9b93c7a4bfc44d87f38f80338ac98fc46deb3
    84bd1caeacab6867d726c40546
    """
)
NEW_SESSION_TICKET = h(
    """
    040000c90000001efad6aac502000000b22c035d829359ee5ff7af4ec900000000262a6494dc486d2c8a34cb33
    fa90bf1b0070ad3c498883c9367c09a2be785abc55cd226097a3a982117283f82a03a143efd3ff5dd36d64e861
    be7fd61d2827db279cce145077d454a3664d4e6da4d29ee03725a6a4dafcd0fc67d2aea70529513e3da2677fa5
    906c5b3f7d8f92f228bda40dda721470f9fbf297b5aea617646fac5c03272e970727c621a79141ef5f7de6505e
    5bfbc388e93343694093934ae4d3570008002a000400000400
    """
)
TICKET_RECORD = h(
    """
    17030300de3a6b8f90414a97d6959c3487680de5134a2b240e6cffac116e95d41d6af8f6b580dcf3d11d63c758
    db289a015940252f55713e061dc13e078891a38efbcf5753ad8ef170ad3c7353d16d9da773b9ca7f2b9fa1b6c0
    d4a3d03f75e09c30ba1e62972ac46f75f7b981be63439b2999ce13064615139891d5e4c5b406f16e3fc181a77c
    a475840025db2f0a77f81b5ab05b94c01346755f69232c86519d86cbeeac87aac347d143f9605d64f650db4d02
    3e70e952ca49fe5137121c74bc2697687e248746d6df353005f3bce18696129c8153556b3b6c6779b37bf15985
    684f
    """
)
APP_PAYLOAD = bytes(range(50))
CLIENT_DATA_RECORD = h(
    """
    1703030043a23f7054b62c94d0affafe8228ba55cbefacea42f914aa66bcab3f2b9819a8a5b46b395bd54a9a20
    441e2b62974e1f5a6292a2977014bd1e3deae63aeebb21694915e4
    """
)
SERVER_DATA_RECORD = h(
    """
    17030300432e937e11ef4ac740e538ad36005fc4a46932fc3225d05f82aa1b36e30efaf97d90e6dffc602dcb50
    1a59a8fcc49c4bf2e5f0a21c0047c2abf332540dd032e167c2955d
    """
)
CLIENT_ALERT_RECORD = h("1703030013c9872760655666b74d7ff1153efd6db6d0b0e3")
SERVER_ALERT_RECORD = h("1703030013b58fd67166ebf599d24720cfbe7efa7a8864a9")

EARLY_SECRET = h("33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a")
DERIVED_FOR_HANDSHAKE = h("6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba")
HANDSHAKE_SECRET = h("1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac")
HELLO_HASH = h("860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8")
C_HS_TRAFFIC = h("b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21")
S_HS_TRAFFIC = h("b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38")
MASTER_SECRET = h("18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919")
C_AP_TRAFFIC = h("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5")
S_AP_TRAFFIC = h("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643")
SERVER_VERIFY_DATA = h("9b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718")
CLIENT_VERIFY_DATA = h("a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61")
S_HS_KEY, S_HS_IV = h("3fce516009c21727d0f2e4e86ee403bc"), h("5d313eb2671276ee13000b30")
C_HS_KEY, C_HS_IV = h("dbfaa693d1762c5b666af5d950258d01"), h("5bd3c71b836e0b76bb73265f")
S_AP_KEY, S_AP_IV = h("9f02283b6c9c07efc26bb9f2ac92e356"), h("cf782b88dd83549aadf1e984")
C_AP_KEY, C_AP_IV = h("17422dda596ed5d9acd890e3c63f5051"), h("5b78923dee08579033e523d9")


def _split_messages(flight: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(flight):
        n = int.from_bytes(flight[i + 1 : i + 4], "big")
        out.append(flight[i : i + 4 + n])
        i += 4 + n
    return out


def test_rfc8448_vectors_are_consistent() -> None:
    # The transcription itself: the lengths §3 states and the key exchange.
    assert (len(CLIENT_HELLO), len(SERVER_HELLO), len(SERVER_FLIGHT)) == (196, 90, 657)
    client = X25519PrivateKey.from_private_bytes(CLIENT_PRIVATE)
    server = X25519PrivateKey.from_private_bytes(SERVER_PRIVATE)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert client.public_key().public_bytes(*raw) in CLIENT_HELLO
    assert server.public_key().public_bytes(*raw) in SERVER_HELLO
    assert client.exchange(server.public_key()) == SHARED_SECRET


def test_rfc8448_handshake_key_schedule() -> None:
    early = early_secret(SHA256)
    assert early == EARLY_SECRET
    assert derive_secret(SHA256, early, b"derived", transcript_hash(SHA256, ())) == (
        DERIVED_FOR_HANDSHAKE
    )
    hs = handshake_secret(SHA256, early, SHARED_SECRET)
    assert hs == HANDSHAKE_SECRET
    assert transcript_hash(SHA256, (CLIENT_HELLO, SERVER_HELLO)) == HELLO_HASH
    assert derive_secret(SHA256, hs, b"c hs traffic", HELLO_HASH) == C_HS_TRAFFIC
    assert derive_secret(SHA256, hs, b"s hs traffic", HELLO_HASH) == S_HS_TRAFFIC
    assert traffic_key_iv(TLS_AES_128_GCM_SHA256, S_HS_TRAFFIC) == (S_HS_KEY, S_HS_IV)
    assert traffic_key_iv(TLS_AES_128_GCM_SHA256, C_HS_TRAFFIC) == (C_HS_KEY, C_HS_IV)
    assert hkdf_expand_label(SHA256, S_HS_TRAFFIC, b"iv", b"", 12) == S_HS_IV


def test_rfc8448_finished_and_application_secrets() -> None:
    ee, cert, cv, fin = _split_messages(SERVER_FLIGHT)
    assert [m[0] for m in (ee, cert, cv, fin)] == [8, 11, 15, 20]
    up_to_cv = transcript_hash(SHA256, (CLIENT_HELLO, SERVER_HELLO, ee, cert, cv))
    assert finished_verify_data(SHA256, S_HS_TRAFFIC, up_to_cv) == SERVER_VERIFY_DATA
    assert fin[4:] == SERVER_VERIFY_DATA
    up_to_fin = transcript_hash(SHA256, (CLIENT_HELLO, SERVER_HELLO, ee, cert, cv, fin))
    assert finished_verify_data(SHA256, C_HS_TRAFFIC, up_to_fin) == CLIENT_VERIFY_DATA
    ms = master_secret(SHA256, HANDSHAKE_SECRET)
    assert ms == MASTER_SECRET
    assert derive_secret(SHA256, ms, b"c ap traffic", up_to_fin) == C_AP_TRAFFIC
    assert derive_secret(SHA256, ms, b"s ap traffic", up_to_fin) == S_AP_TRAFFIC
    assert traffic_key_iv(TLS_AES_128_GCM_SHA256, S_AP_TRAFFIC) == (S_AP_KEY, S_AP_IV)
    assert traffic_key_iv(TLS_AES_128_GCM_SHA256, C_AP_TRAFFIC) == (C_AP_KEY, C_AP_IV)


def test_rfc8448_records_seal_byte_for_byte() -> None:
    suite = TLS_AES_128_GCM_SHA256
    assert seal_tls13_record(suite, S_HS_KEY, S_HS_IV, 0, 22, SERVER_FLIGHT) == (
        SERVER_FLIGHT_RECORD
    )
    client_fin = b"\x14\x00\x00\x20" + CLIENT_VERIFY_DATA
    assert seal_tls13_record(suite, C_HS_KEY, C_HS_IV, 0, 22, client_fin) == CLIENT_FINISHED_RECORD
    assert seal_tls13_record(suite, S_AP_KEY, S_AP_IV, 0, 22, NEW_SESSION_TICKET) == TICKET_RECORD
    assert seal_tls13_record(suite, C_AP_KEY, C_AP_IV, 0, 23, APP_PAYLOAD) == CLIENT_DATA_RECORD
    assert seal_tls13_record(suite, S_AP_KEY, S_AP_IV, 1, 23, APP_PAYLOAD) == SERVER_DATA_RECORD
    close_notify = b"\x01\x00"
    assert seal_tls13_record(suite, C_AP_KEY, C_AP_IV, 1, 21, close_notify) == (
        CLIENT_ALERT_RECORD
    )
    assert seal_tls13_record(suite, S_AP_KEY, S_AP_IV, 2, 21, close_notify) == (
        SERVER_ALERT_RECORD
    )


def test_tls12_prf_ietf_vector() -> None:
    # P_SHA256 vector posted to the IETF TLS WG (mail-archive/web/tls/current/msg03416.html).
    out = tls12_prf(
        SHA256, h("9bbe436ba940f017b17652849a71db35"), b"test label",
        h("a0ba9f936cda311827a6f796ffd5198c"), 100,
    )
    assert out == h(
        """
        e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e
        14baf9af0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5
        a72e5a5110fff70187347b66
        """
    )


# -- signatures ----------------------------------------------------------------------------------


def test_pss_sign_is_deterministic_and_verifies() -> None:
    key = derive_key(0, "kz2019-host:facebook.com", RSA_2048_E3)
    assert isinstance(key, rsa.RSAPrivateKey)
    salt = bytes(range(32))
    sig = pss_sign(key, b"message", SHA256, salt)
    assert sig == pss_sign(key, b"message", SHA256, salt)
    assert sig != pss_sign(key, b"message", SHA256, bytes(32))
    key.public_key().verify(
        sig, b"message", padding.PSS(padding.MGF1(SHA256), salt_length=32), SHA256
    )


# -- whole transcripts -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def factory() -> CertFactory:
    return CertFactory(seed=0)


def _chain_and_key(
    factory: CertFactory, kind: str
) -> tuple[tuple[x509.Certificate, ...], rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]:
    sc = factory.legitimate("example.org") if kind == "ec" else factory.forged_2019()
    assert sc.leaf_key is not None
    return sc.chain, sc.leaf_key


def _keylog(t: Transcript) -> dict[str, bytes]:
    out = {}
    for line in t.keylog.splitlines():
        label, random, secret = line.split()
        assert bytes.fromhex(random) == t.client_random
        out[label] = bytes.fromhex(secret)
    return out


def _verify_cv(leaf: x509.Certificate, cv: bytes, content: bytes) -> None:
    scheme = int.from_bytes(cv[4:6], "big")
    sig = cv[8:]
    pub = leaf.public_key()
    if scheme == 0x0403:
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        pub.verify(sig, content, ec.ECDSA(SHA256))
    else:
        assert scheme == 0x0804 and isinstance(pub, rsa.RSAPublicKey)
        pub.verify(sig, content, padding.PSS(padding.MGF1(SHA256), salt_length=32), SHA256)


@pytest.mark.parametrize(
    ("kind", "suite", "hrr"),
    [
        ("ec", TLS_AES_128_GCM_SHA256, False),
        ("ec", TLS_CHACHA20_POLY1305_SHA256, False),
        ("ec", TLS_AES_256_GCM_SHA384, True),
        ("rsa", TLS_AES_128_GCM_SHA256, False),
    ],
)
def test_tls13_transcript_verifies(factory: CertFactory, kind: str, suite: int, hrr: bool) -> None:
    chain, key = _chain_and_key(factory, kind)
    t = tls13_handshake(chain, key, sni="example.org", suite=suite, hello_retry=hrr)
    algorithm = hashes.SHA384() if suite == TLS_AES_256_GCM_SHA384 else SHA256
    msgs = list(t.handshake_messages)
    if hrr:
        ch1, hello_retry = msgs[:2]
        assert hello_retry[6:38] == HRR_RANDOM
        synthetic = b"\xfe\x00\x00" + bytes([algorithm.digest_size])
        msgs = [synthetic + transcript_hash(algorithm, (ch1,)), *msgs[1:]]
    ch, sh, ee, cert, cv, s_fin, c_fin = msgs[-7:]
    assert [m[0] for m in (ch, sh, ee, cert, cv, s_fin, c_fin)] == [1, 2, 8, 11, 15, 20, 20]
    assert int.from_bytes(sh[39 + sh[38] : 41 + sh[38]], "big") == suite
    secrets = _keylog(t)
    prefix = msgs[: msgs.index(cv)]
    content = b" " * 64 + b"TLS 1.3, server CertificateVerify\x00"
    _verify_cv(chain[0], cv, content + transcript_hash(algorithm, prefix))
    s_hs = secrets["SERVER_HANDSHAKE_TRAFFIC_SECRET"]
    c_hs = secrets["CLIENT_HANDSHAKE_TRAFFIC_SECRET"]
    upto_cv = transcript_hash(algorithm, msgs[: msgs.index(s_fin)])
    assert s_fin[4:] == finished_verify_data(algorithm, s_hs, upto_cv)
    upto_sfin = transcript_hash(algorithm, msgs[: msgs.index(s_fin) + 1])
    assert c_fin[4:] == finished_verify_data(algorithm, c_hs, upto_sfin)
    # Every DER of the chain is inside the Certificate message, in order.
    ders = [c.public_bytes(serialization.Encoding.DER) for c in chain]
    positions = [cert.index(d) for d in ders]
    assert positions == sorted(positions)
    # The handshake records are encrypted: no certificate bytes in the server's stream.
    assert ders[0] not in t.sent_by("server")


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_tls12_transcript(factory: CertFactory, kind: str) -> None:
    chain, key = _chain_and_key(factory, kind)
    t = tls12_handshake(chain, key, sni="facebook.com")
    assert t.cipher_suite == (
        TLS12_ECDHE_ECDSA_AES128_GCM if kind == "ec" else TLS12_ECDHE_RSA_AES128_GCM
    )
    ch, sh, cert, ske, shd, cke, c_fin, s_fin = t.handshake_messages
    assert [m[0] for m in t.handshake_messages] == [1, 2, 11, 12, 14, 16, 20, 20]
    # The chain travels in cleartext.
    assert chain[-1].public_bytes(serialization.Encoding.DER) in t.sent_by("server")
    # ServerKeyExchange signature over client_random + server_random + params.
    params = ske[4 : 4 + 4 + 32]
    scheme = int.from_bytes(ske[40:42], "big")
    sig = ske[44:]
    signed = t.client_random + t.server_random + params
    pub = chain[0].public_key()
    if kind == "ec":
        assert scheme == 0x0403 and isinstance(pub, ec.EllipticCurvePublicKey)
        pub.verify(sig, signed, ec.ECDSA(SHA256))
    else:
        assert scheme == 0x0401 and isinstance(pub, rsa.RSAPublicKey)
        pub.verify(sig, signed, padding.PKCS1v15(), SHA256)
    label, random, ms_hex = t.keylog.split()
    assert (label, random) == ("CLIENT_RANDOM", t.client_random.hex())
    ms = bytes.fromhex(ms_hex)
    assert c_fin[4:] == tls12_prf(
        SHA256, ms, b"client finished", transcript_hash(SHA256, (ch, sh, cert, ske, shd, cke)), 12
    )
    assert s_fin[4:] == tls12_prf(
        SHA256, ms, b"server finished",
        transcript_hash(SHA256, (ch, sh, cert, ske, shd, cke, c_fin)), 12,
    )


def test_same_seed_same_bytes_other_seed_other_bytes(factory: CertFactory) -> None:
    chain, key = _chain_and_key(factory, "ec")
    for make in (tls13_handshake, tls12_handshake):
        a = make(chain, key, sni="example.org", seed=7, label="x")
        b = make(chain, key, sni="example.org", seed=7, label="x")
        c = make(chain, key, sni="example.org", seed=8, label="x")
        assert a == b
        assert a.sent_by("client") != c.sent_by("client")
        assert a.keylog != c.keylog
    hrr = tls13_handshake(chain, key, sni="example.org", hello_retry=True)
    assert hrr == tls13_handshake(chain, key, sni="example.org", hello_retry=True)


def test_wrong_key_is_refused(factory: CertFactory) -> None:
    chain, _ = _chain_and_key(factory, "ec")
    _, other = _chain_and_key(factory, "rsa")
    with pytest.raises(ValueError, match="leaf"):
        tls13_handshake(chain, other, sni="example.org")
    with pytest.raises(ValueError, match="unsupported"):
        tls13_handshake(chain, _chain_and_key(factory, "ec")[1], sni="x", suite=0x1304)


def test_failure_transcripts() -> None:
    t = client_hello_only("blocked-reset.test", seed=0)
    assert t.version == "" and t.keylog == ""
    (flight,) = t.flights
    assert flight.sender == "client" and flight.data[:3] == b"\x16\x03\x01"
    assert b"blocked-reset.test" in flight.data
    blocked = t.with_flight("server", ALERT_HANDSHAKE_FAILURE, "alert")
    assert blocked.sent_by("server") == bytes.fromhex("15030300020228")
    assert alert_record(2, 40) == ALERT_HANDSHAKE_FAILURE
    assert client_hello_only("a.test", tls13=False).flights[0].data != t.flights[0].data
