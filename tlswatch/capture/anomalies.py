"""The anomaly vocabulary of the capture layer: what was odd in the file or on the wire.

Anomalies are counted (``Counter[str]`` keyed by these values), never raised: a misbehaving
peer or a damaged file is data (DESIGN §3.3). File-level anomalies that stop reading also
produce a :class:`~tlswatch.capture.errors.CaptureWarning`.
"""

from __future__ import annotations

import enum

__all__ = ["Anomaly"]


class Anomaly(enum.StrEnum):
    # -- file level (reading stops after these, with a warning) --
    TRUNCATED_FILE = "truncated_file"  # the file ends inside a record or block
    BAD_BLOCK_LENGTH = "bad_block_length"  # pcapng length < 12, not a multiple of 4, or > cap
    BLOCK_LENGTH_MISMATCH = "block_length_mismatch"  # pcapng trailing length differs
    BAD_SECTION_HEADER = "bad_section_header"  # pcapng SHB without a valid byte-order magic
    PACKET_TOO_LARGE = "packet_too_large"  # captured length over the per-packet cap
    COMPRESSED_STREAM_ERROR = "compressed_stream_error"  # gzip/xz/bz2 data damaged or cut
    # -- file level, reading goes on --
    UNKNOWN_INTERFACE = "unknown_interface"  # packet names an interface with no IDB
    BAD_BLOCK = "bad_block"  # a known pcapng block whose body does not fit its length
    CAPLEN_EXCEEDS_ORIGLEN = "caplen_exceeds_origlen"
    # -- packet decoding --
    UNSUPPORTED_LINKTYPE = "unsupported_linktype"
    TRUNCATED_LINK_HEADER = "truncated_link_header"
    TRUNCATED_IP_HEADER = "truncated_ip_header"
    BAD_IP_HEADER = "bad_ip_header"  # version/IHL/total length inconsistent
    IP_FRAGMENT = "ip_fragment"  # a fragment of a datagram (reassembled when it can be)
    # -- IP fragment reassembly (tlswatch.capture.ipfrag) --
    IP_FRAGMENT_OVERLAP_CONFLICT = "ip_fragment_overlap_conflict"  # overlapping bytes differ
    IP_FRAGMENT_BAD = "ip_fragment_bad"  # bad length, past 64 KiB or the datagram's end
    IP_FRAGMENT_TOO_MANY = "ip_fragment_too_many"  # over the cap per datagram: dropped
    IP_FRAGMENT_OVERFLOW = "ip_fragment_overflow"  # reassembly buffers full: oldest dropped
    IP_FRAGMENT_TIMEOUT = "ip_fragment_timeout"  # incomplete when its time was up: dropped
    IP_FRAGMENT_INCOMPLETE = "ip_fragment_incomplete"  # still incomplete when the capture ended
    TRUNCATED_TCP_HEADER = "truncated_tcp_header"
    BAD_TCP_HEADER = "bad_tcp_header"  # data offset < 5 or beyond the packet
    TRUNCATED_UDP_HEADER = "truncated_udp_header"
    SNAPPED_PAYLOAD = "snapped_payload"  # fewer payload bytes captured than the IP header says
    # -- TCP reassembly --
    TCP_GAP = "tcp_gap"  # bytes never seen; the stream skips them with a Gap event
    TCP_OVERLAP_CONFLICT = "tcp_overlap_conflict"  # retransmitted/overlapping bytes differ
    TCP_OOO_OVERFLOW = "tcp_ooo_overflow"  # out-of-order buffer full: forced a gap
    TCP_OUT_OF_WINDOW = "tcp_out_of_window"  # seq more than 64 MiB from the expected one
    TCP_DATA_BEFORE_START = "tcp_data_before_start"  # mid-stream pickup: bytes before first seen
    TCP_RST_FLOOD = "tcp_rst_flood"  # more RSTs on one flow than are reported as events
    FLOW_TABLE_FULL = "flow_table_full"  # a live flow was evicted (least recently used)
