"""Sans-IO TLS wire parsing: records, handshake reassembly, hello/certificate/alert decoding,
JA3/JA3S/JA4 fingerprints. Bytes in, events out; no sockets, files or clocks here.

Typical use (a probe or the capture analyser)::

    conn = TLSConnection()
    conn.feed_client(client_bytes)   # in arrival order, either side, any chunking
    conn.feed_server(server_bytes)
    conn.server_hello, conn.certificates, conn.history, conn.ja4

Each name loads its submodule on first use (:mod:`tlswatch._lazy`): a caller that only
parses never loads the key-log decryption (cryptography's AEADs).
"""

from typing import TYPE_CHECKING

from tlswatch._lazy import lazy_exports

if TYPE_CHECKING:
    from .alerts import ALERT_NAMES, alert_name
    from .certificate import CertificateMessage, decode_certificate
    from .compressed_certificate import (
        CompressedCertificate,
        DecompressionError,
        available_algorithms,
        decode_compressed_certificate,
        decompress_certificate,
    )
    from .connection import HISTORY_LETTERS, TLSConnection, history_letter
    from .decrypt import (
        CIPHER_SUITES,
        CipherSuite,
        DecryptError,
        DecryptState,
        HandshakeDecryptor,
        hkdf_expand_label,
        open_record,
        record_nonce,
        traffic_key_iv,
    )
    from .events import (
        AlertEvent,
        CertificateEvent,
        ChangeCipherSpecEvent,
        ClientHelloEvent,
        CompressedCertificateErrorEvent,
        EncryptedRecordEvent,
        EndOfStreamEvent,
        Event,
        HandshakeMessageEvent,
        HelloRetryRequestEvent,
        InvalidEvent,
        ServerHelloEvent,
    )
    from .fingerprints import ja3, ja3_string, ja3s, ja3s_string, ja4, ja4_o, ja4_r, ja4_ro
    from .handshake import (
        DEFAULT_MAX_MESSAGE_SIZE,
        HandshakeMessage,
        HandshakeReassembler,
        HandshakeType,
        OversizedMessage,
    )
    from .hello import (
        HRR_RANDOM,
        ClientHello,
        DecodeError,
        Extension,
        ExtensionType,
        ServerHello,
        decode_client_hello,
        decode_server_hello,
        decode_sslv2_client_hello,
        is_grease,
    )
    from .keylog import KeyLog, load_keylog
    from .parser import Role, Status, TLSParser, decode_handshake_message
    from .records import (
        MAX_RECORD_LENGTH,
        ContentType,
        Detection,
        check_record_header,
        looks_like_tls,
    )

__all__ = [
    "ALERT_NAMES",
    "CIPHER_SUITES",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HISTORY_LETTERS",
    "HRR_RANDOM",
    "MAX_RECORD_LENGTH",
    "AlertEvent",
    "CertificateEvent",
    "CertificateMessage",
    "ChangeCipherSpecEvent",
    "CipherSuite",
    "ClientHello",
    "ClientHelloEvent",
    "CompressedCertificate",
    "CompressedCertificateErrorEvent",
    "ContentType",
    "DecodeError",
    "DecompressionError",
    "DecryptError",
    "DecryptState",
    "Detection",
    "EncryptedRecordEvent",
    "EndOfStreamEvent",
    "Event",
    "Extension",
    "ExtensionType",
    "HandshakeDecryptor",
    "HandshakeMessage",
    "HandshakeMessageEvent",
    "HandshakeReassembler",
    "HandshakeType",
    "HelloRetryRequestEvent",
    "InvalidEvent",
    "KeyLog",
    "OversizedMessage",
    "Role",
    "ServerHello",
    "ServerHelloEvent",
    "Status",
    "TLSConnection",
    "TLSParser",
    "alert_name",
    "available_algorithms",
    "check_record_header",
    "decode_certificate",
    "decode_client_hello",
    "decode_compressed_certificate",
    "decode_handshake_message",
    "decode_server_hello",
    "decode_sslv2_client_hello",
    "decompress_certificate",
    "history_letter",
    "hkdf_expand_label",
    "is_grease",
    "ja3",
    "ja3_string",
    "ja3s",
    "ja3s_string",
    "ja4",
    "ja4_o",
    "ja4_r",
    "ja4_ro",
    "load_keylog",
    "looks_like_tls",
    "open_record",
    "record_nonce",
    "traffic_key_iv",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".alerts": ("ALERT_NAMES", "alert_name"),
    ".certificate": ("CertificateMessage", "decode_certificate"),
    ".compressed_certificate": ("CompressedCertificate", "DecompressionError",
                                "available_algorithms", "decode_compressed_certificate",
                                "decompress_certificate"),
    ".connection": ("HISTORY_LETTERS", "TLSConnection", "history_letter"),
    ".decrypt": ("CIPHER_SUITES", "CipherSuite", "DecryptError", "DecryptState",
                 "HandshakeDecryptor", "hkdf_expand_label", "open_record", "record_nonce",
                 "traffic_key_iv"),
    ".events": ("AlertEvent", "CertificateEvent", "ChangeCipherSpecEvent", "ClientHelloEvent",
                "CompressedCertificateErrorEvent", "EncryptedRecordEvent", "EndOfStreamEvent",
                "Event", "HandshakeMessageEvent", "HelloRetryRequestEvent", "InvalidEvent",
                "ServerHelloEvent"),
    ".fingerprints": ("ja3", "ja3_string", "ja3s", "ja3s_string", "ja4", "ja4_o", "ja4_r",
                      "ja4_ro"),
    ".handshake": ("DEFAULT_MAX_MESSAGE_SIZE", "HandshakeMessage", "HandshakeReassembler",
                   "HandshakeType", "OversizedMessage"),
    ".hello": ("HRR_RANDOM", "ClientHello", "DecodeError", "Extension", "ExtensionType",
               "ServerHello", "decode_client_hello", "decode_server_hello",
               "decode_sslv2_client_hello", "is_grease"),
    ".keylog": ("KeyLog", "load_keylog"),
    ".parser": ("Role", "Status", "TLSParser", "decode_handshake_message"),
    ".records": ("MAX_RECORD_LENGTH", "ContentType", "Detection", "check_record_header",
                 "looks_like_tls"),
})
