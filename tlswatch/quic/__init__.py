"""Sans-IO QUIC analysis (RFC 9000/9001, v2 per RFC 9369): decrypt Initial packets with
their public keys, parse frames, reassemble CRYPTO data into the ClientHello/ServerHello and
report per-flow outcomes; with a key log, open the Handshake packets too and read the
server's chain. Bytes in, observations out; nothing here sends packets.

Each name loads its submodule on first use (:mod:`tlswatch._lazy`): ``tlswatch analyse``
loads QUIC only for a capture that holds QUIC packets.
"""

from typing import TYPE_CHECKING

from tlswatch._lazy import lazy_exports

if TYPE_CHECKING:
    from .crypto_stream import DEFAULT_MAX_CRYPTO_BYTES, CryptoStream
    from .frames import (
        TRANSPORT_ERROR_NAMES,
        AckFrame,
        ConnectionCloseFrame,
        CryptoFrame,
        Frame,
        FrameError,
        PaddingFrame,
        PingFrame,
        parse_frames,
        read_varint,
        transport_error_name,
    )
    from .handshake import HandshakeSpace, encrypted_extensions_alpn
    from .initial import (
        INITIAL_SALTS,
        QUIC_V1,
        QUIC_V2,
        InitialKeys,
        InitialPacket,
        LongHeader,
        PacketType,
        decode_packet_number,
        decrypt_initial,
        decrypt_long_packet,
        encrypt_initial,
        encrypt_long_packet,
        initial_keys,
        initial_secrets,
        parse_long_header,
        parse_long_headers,
    )
    from .observe import (
        OUTCOME_CONNECTION_CLOSE,
        OUTCOME_HANDSHAKE,
        OUTCOME_NO_RESPONSE,
        OUTCOME_RETRY,
        OUTCOME_SERVER_RESPONSE,
        OUTCOME_VERSION_NEGOTIATION,
        QuicFlowObservation,
        SecretLookup,
        analyse_quic_datagrams,
    )
    from .protection import (
        PacketKeys,
        header_mask,
        open_packet,
        packet_keys,
        retry_integrity_tag,
        seal_packet,
    )

__all__ = [
    "DEFAULT_MAX_CRYPTO_BYTES",
    "INITIAL_SALTS",
    "OUTCOME_CONNECTION_CLOSE",
    "OUTCOME_HANDSHAKE",
    "OUTCOME_NO_RESPONSE",
    "OUTCOME_RETRY",
    "OUTCOME_SERVER_RESPONSE",
    "OUTCOME_VERSION_NEGOTIATION",
    "QUIC_V1",
    "QUIC_V2",
    "TRANSPORT_ERROR_NAMES",
    "AckFrame",
    "ConnectionCloseFrame",
    "CryptoFrame",
    "CryptoStream",
    "Frame",
    "FrameError",
    "HandshakeSpace",
    "InitialKeys",
    "InitialPacket",
    "LongHeader",
    "PacketKeys",
    "PacketType",
    "PaddingFrame",
    "PingFrame",
    "QuicFlowObservation",
    "SecretLookup",
    "analyse_quic_datagrams",
    "decode_packet_number",
    "decrypt_initial",
    "decrypt_long_packet",
    "encrypt_initial",
    "encrypt_long_packet",
    "encrypted_extensions_alpn",
    "header_mask",
    "initial_keys",
    "initial_secrets",
    "open_packet",
    "packet_keys",
    "parse_frames",
    "parse_long_header",
    "parse_long_headers",
    "read_varint",
    "retry_integrity_tag",
    "seal_packet",
    "transport_error_name",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    ".crypto_stream": ("DEFAULT_MAX_CRYPTO_BYTES", "CryptoStream"),
    ".frames": ("TRANSPORT_ERROR_NAMES", "AckFrame", "ConnectionCloseFrame", "CryptoFrame",
                "Frame", "FrameError", "PaddingFrame", "PingFrame", "parse_frames", "read_varint",
                "transport_error_name"),
    ".handshake": ("HandshakeSpace", "encrypted_extensions_alpn"),
    ".initial": ("INITIAL_SALTS", "QUIC_V1", "QUIC_V2", "InitialKeys", "InitialPacket",
                 "LongHeader", "PacketType", "decode_packet_number", "decrypt_initial",
                 "decrypt_long_packet", "encrypt_initial", "encrypt_long_packet", "initial_keys",
                 "initial_secrets", "parse_long_header", "parse_long_headers"),
    ".observe": ("OUTCOME_CONNECTION_CLOSE", "OUTCOME_HANDSHAKE", "OUTCOME_NO_RESPONSE",
                 "OUTCOME_RETRY", "OUTCOME_SERVER_RESPONSE", "OUTCOME_VERSION_NEGOTIATION",
                 "QuicFlowObservation", "SecretLookup", "analyse_quic_datagrams"),
    ".protection": ("PacketKeys", "header_mask", "open_packet", "packet_keys",
                    "retry_integrity_tag", "seal_packet"),
})
