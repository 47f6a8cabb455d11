/* Bulk booking in C: the pcap fast path for packets of flows that no longer deliver data.
 *
 * Most packets of a large capture belong to flows whose TLS handshake is already parsed (or
 * that are not TLS): the flow table only counts them (packets, bytes, TTLs, IP IDs, how far
 * the sequence got). tlswatch.capture.tcp registers such flows here; walk_pcap() then books
 * consecutive pcap records of registered flows without creating a Python object per packet,
 * and stops at the first record it cannot book (another flow, SYN/FIN/RST, an odd header,
 * a record past the end of the buffer, the next sweep time), which Python handles as
 * before. The counters go back into the Python flow table on pop()/pop_stale().
 *
 * The rules are those of TcpReassembler.feed_bulk_frame (tests compare both paths), and the
 * bytes are hostile: every offset is checked against the record and the buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* A flow key: IP version (4 or 6), source and destination addresses, ports; an IPv4 key is
   4 + 4 + 2 + 2 bytes after the version, zero-padded (tlswatch.capture.tcp builds the same). */
#define KEY_LEN 37
#define MAX_TTLS 8
#define MAX_PACKET_LEN (16u << 20)
#define MAX_SEQ_DISTANCE (64 << 20)
#define MAX_ENTRIES (1 << 20)
#define MAX_BLOCK_LEN (256u << 20)
#define MAX_IFACES 64

typedef struct {
    uint64_t packets, payload, after_rst;
    int64_t first_ts, last_ts, offset_delta;
    uint32_t next_seq;
    uint8_t active, started, has_first_ts, has_first_ip_id, nttl;
    int32_t first_ip_id, last_ip_id, last_ttl;
    uint8_t ttl_val[MAX_TTLS];
    uint64_t ttl_cnt[MAX_TTLS];
} side_t;

typedef struct {
    PyObject *fid; /* owned; NULL when the entry is free */
    int64_t last_ts, reg_last_ts;
    uint8_t booked, rst_seen;
    uint8_t key[2][KEY_LEN];
    uint32_t next_free;
    side_t side[2];
} entry_t;

typedef struct {
    PyObject_HEAD
    PyObject *lru;        /* the flow table's OrderedDict: fid -> flow */
    PyObject *move_to_end; /* its bound move_to_end */
    entry_t *entries;
    uint32_t n_entries, used, free_head, hwm; /* entries past hwm were never used */
    uint32_t *slots;      /* 0 empty, else (entry index << 1 | side) + 1 */
    uint32_t *slot_hash;
    uint32_t mask;
    uint64_t seed;
    int64_t next_sweep;
    unsigned long long packets, bytes; /* records consumed: booked, or another share's */
    unsigned long long skipped;        /* ...of which another share's */
    uint32_t part_index, part_count;   /* this process's share of the flows (1 = all) */
    int64_t clock;                     /* time of the last TCP packet, of any share */
    uint8_t has_clock;
    uint32_t n_ifaces;                 /* pcapng: the section's interfaces walk_pcapng takes */
    uint8_t iface_ok[MAX_IFACES];
    int64_t iface_mul[MAX_IFACES], iface_off[MAX_IFACES];
    int iface_link[MAX_IFACES];
} BulkTable;

/* CRC-32 (IEEE, as zlib.crc32): which share of the flows a packet belongs to, computed
   the same way by the Python path (tlswatch.capture.flows.share_of). */
static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* The share of a TCP/UDP packet (addresses of alen bytes): both directions of a flow give
   the same one (the lower address+port first). */
static uint32_t share_of(const uint8_t *src, const uint8_t *dst, const uint8_t *sport,
                         const uint8_t *dport, size_t alen, uint32_t count) {
    uint8_t a[18], b[18], canon[36];
    memcpy(a, src, alen);
    memcpy(a + alen, sport, 2);
    memcpy(b, dst, alen);
    memcpy(b + alen, dport, 2);
    int lo = memcmp(a, b, alen + 2) <= 0;
    memcpy(canon, lo ? a : b, alen + 2);
    memcpy(canon + alen + 2, lo ? b : a, alen + 2);
    return crc32_of(canon, 2 * (alen + 2)) % count;
}

static inline uint64_t fmix64(uint64_t h) { /* murmur3's finaliser */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

/* Keyed by a random seed: addresses and ports come from the capture and may be chosen to
   collide. */
static uint32_t hash_key(const BulkTable *t, const uint8_t *k) {
    uint64_t h = t->seed ^ 0x9E3779B97F4A7C15ULL, w;
    for (int i = 0; i + 8 <= KEY_LEN; i += 8) {
        memcpy(&w, k + i, 8);
        h = fmix64(h ^ w);
    }
    w = 0;
    memcpy(&w, k + (KEY_LEN & ~7), KEY_LEN & 7);
    h = fmix64(h ^ w ^ ((uint64_t)KEY_LEN << 56));
    return (uint32_t)(h ^ (h >> 32));
}

/* Slot index holding key k, or -1. */
static int64_t find_slot(const BulkTable *t, const uint8_t *k, uint32_t h) {
    uint32_t i = h & t->mask;
    for (;;) {
        uint32_t s = t->slots[i];
        if (s == 0)
            return -1;
        if (t->slot_hash[i] == h) {
            const entry_t *e = &t->entries[(s - 1) >> 1];
            if (memcmp(e->key[(s - 1) & 1], k, KEY_LEN) == 0)
                return i;
        }
        i = (i + 1) & t->mask;
    }
}

static void insert_slot(BulkTable *t, uint32_t h, uint32_t value) {
    uint32_t i = h & t->mask;
    while (t->slots[i] != 0)
        i = (i + 1) & t->mask;
    t->slots[i] = value;
    t->slot_hash[i] = h;
}

/* Linear probing deletion without tombstones: later entries of the cluster move back. */
static void delete_slot(BulkTable *t, uint32_t i) {
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & t->mask;
        if (t->slots[j] == 0)
            break;
        uint32_t home = t->slot_hash[j] & t->mask;
        /* the entry at j may fill the hole at i unless its home lies cyclically in (i, j] */
        int stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            t->slots[i] = t->slots[j];
            t->slot_hash[i] = t->slot_hash[j];
            i = j;
        }
    }
    t->slots[i] = 0;
}

static int get_key(PyObject *o, const uint8_t **out) {
    if (!PyBytes_Check(o) || PyBytes_GET_SIZE(o) != KEY_LEN) {
        PyErr_SetString(PyExc_ValueError, "a flow key is 37 bytes");
        return -1;
    }
    *out = (const uint8_t *)PyBytes_AS_STRING(o);
    return 0;
}

/* state: None (inactive side) or (started, next_seq, has_first_ts, has_first_ip_id, ttls) */
static int load_side(side_t *sd, PyObject *state) {
    memset(sd, 0, sizeof(*sd));
    sd->first_ip_id = sd->last_ip_id = sd->last_ttl = -1;
    if (state == Py_None)
        return 0;
    int started, has_ts, has_id;
    unsigned long next_seq;
    PyObject *ttls;
    if (!PyArg_ParseTuple(state, "pkppO!", &started, &next_seq, &has_ts, &has_id,
                          &PyDict_Type, &ttls))
        return -1;
    sd->active = 1;
    sd->started = (uint8_t)started;
    sd->next_seq = (uint32_t)next_seq;
    sd->has_first_ts = (uint8_t)has_ts;
    sd->has_first_ip_id = (uint8_t)has_id;
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(ttls, &pos, &k, &v)) {
        if (sd->nttl >= MAX_TTLS)
            break;
        long ttl = PyLong_AsLong(k);
        unsigned long long cnt = PyLong_AsUnsignedLongLong(v);
        if (PyErr_Occurred())
            return -1;
        if (ttl < 0 || ttl > 255) {
            PyErr_SetString(PyExc_ValueError, "a TTL is 0..255");
            return -1;
        }
        sd->ttl_val[sd->nttl] = (uint8_t)ttl;
        sd->ttl_cnt[sd->nttl] = cnt;
        sd->nttl++;
    }
    return 0;
}

/* add(client_key, server_key, fid, last_ts, rst_seen, client_state, server_state) -> bool */
static PyObject *BulkTable_add(BulkTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "add() takes 7 arguments");
        return NULL;
    }
    const uint8_t *k0, *k1;
    if (get_key(args[0], &k0) < 0 || get_key(args[1], &k1) < 0)
        return NULL;
    if (!PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "fid must be an int");
        return NULL;
    }
    int64_t last_ts = PyLong_AsLongLong(args[3]);
    if (last_ts == -1 && PyErr_Occurred())
        return NULL;
    int rst_seen = PyObject_IsTrue(args[4]);
    if (rst_seen < 0)
        return NULL;
    if ((t->free_head == UINT32_MAX && t->hwm == t->n_entries) || memcmp(k0, k1, KEY_LEN) == 0)
        Py_RETURN_FALSE;
    uint32_t h0 = hash_key(t, k0), h1 = hash_key(t, k1);
    if (find_slot(t, k0, h0) >= 0 || find_slot(t, k1, h1) >= 0) {
        PyErr_SetString(PyExc_ValueError, "flow already registered");
        return NULL;
    }
    uint32_t idx = t->free_head != UINT32_MAX ? t->free_head : t->hwm;
    entry_t *e = &t->entries[idx];
    if (load_side(&e->side[0], args[5]) < 0 || load_side(&e->side[1], args[6]) < 0)
        return NULL;
    if (idx == t->hwm)
        t->hwm++;
    else
        t->free_head = e->next_free;
    Py_INCREF(args[2]);
    e->fid = args[2];
    e->last_ts = e->reg_last_ts = last_ts;
    e->booked = 0;
    e->rst_seen = (uint8_t)rst_seen;
    memcpy(e->key[0], k0, KEY_LEN);
    memcpy(e->key[1], k1, KEY_LEN);
    insert_slot(t, h0, (idx << 1) + 1);
    insert_slot(t, h1, (idx << 1 | 1) + 1);
    t->used++;
    Py_RETURN_TRUE;
}

static PyObject *side_delta(const side_t *sd) {
    if (!sd->packets)
        Py_RETURN_NONE;
    PyObject *ttls = PyList_New(sd->nttl);
    if (ttls == NULL)
        return NULL;
    for (int i = 0; i < sd->nttl; i++) {
        PyObject *pair = Py_BuildValue("(iK)", (int)sd->ttl_val[i],
                                       (unsigned long long)sd->ttl_cnt[i]);
        if (pair == NULL) {
            Py_DECREF(ttls);
            return NULL;
        }
        PyList_SET_ITEM(ttls, i, pair);
    }
    /* (packets, first_ts, last_ts, payload_bytes, started, next_seq, offset_delta, last_ttl,
        ttls, first_ip_id, last_ip_id, after_rst) */
    return Py_BuildValue("(KLLKNkLiNiiK)", (unsigned long long)sd->packets,
                         (long long)sd->first_ts, (long long)sd->last_ts,
                         (unsigned long long)sd->payload, PyBool_FromLong(sd->started),
                         (unsigned long)sd->next_seq, (long long)sd->offset_delta,
                         (int)sd->last_ttl, ttls, (int)sd->first_ip_id, (int)sd->last_ip_id,
                         (unsigned long long)sd->after_rst);
}

/* Remove entry idx; returns (last_ts or None, client delta or None, server delta or None). */
static PyObject *take_entry(BulkTable *t, uint32_t idx) {
    entry_t *e = &t->entries[idx];
    PyObject *d0 = side_delta(&e->side[0]);
    if (d0 == NULL)
        return NULL;
    PyObject *d1 = side_delta(&e->side[1]);
    if (d1 == NULL) {
        Py_DECREF(d0);
        return NULL;
    }
    PyObject *last = e->booked ? PyLong_FromLongLong(e->last_ts) : Py_NewRef(Py_None);
    if (last == NULL) {
        Py_DECREF(d0);
        Py_DECREF(d1);
        return NULL;
    }
    for (int s = 0; s < 2; s++) {
        int64_t i = find_slot(t, e->key[s], hash_key(t, e->key[s]));
        if (i >= 0)
            delete_slot(t, (uint32_t)i);
    }
    Py_CLEAR(e->fid);
    e->next_free = t->free_head;
    t->free_head = idx;
    t->used--;
    return Py_BuildValue("(NNN)", last, d0, d1);
}

/* pop(either_key) -> (last_ts | None, client delta | None, server delta | None) | None */
static PyObject *BulkTable_pop(BulkTable *t, PyObject *key) {
    const uint8_t *k;
    if (get_key(key, &k) < 0)
        return NULL;
    int64_t i = find_slot(t, k, hash_key(t, k));
    if (i < 0)
        Py_RETURN_NONE;
    return take_entry(t, (t->slots[i] - 1) >> 1);
}

/* pop_stale(deadline) -> [(fid, popped)] for entries registered when the flow's last
   packet was at or before deadline: the idle sweep must see their true time. */
static PyObject *BulkTable_pop_stale(BulkTable *t, PyObject *arg) {
    int64_t deadline = PyLong_AsLongLong(arg);
    if (deadline == -1 && PyErr_Occurred())
        return NULL;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (uint32_t idx = 0; idx < t->hwm; idx++) {
        entry_t *e = &t->entries[idx];
        if (e->fid == NULL || e->reg_last_ts > deadline)
            continue;
        PyObject *key = Py_NewRef(e->fid);
        PyObject *got = take_entry(t, idx);
        if (got == NULL) {
            Py_DECREF(key);
            Py_DECREF(out);
            return NULL;
        }
        PyObject *item = Py_BuildValue("(NN)", key, got); /* steals both, even on failure */
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    return out;
}

static inline uint32_t rd32(const uint8_t *p, int swap) {
    uint32_t v;
    memcpy(&v, p, 4);
    return swap ? __builtin_bswap32(v) : v;
}

static inline uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }

/* Link kinds the walkers read (tlswatch.capture.layers.FAST_PATH_LINKS maps link types). */
enum { LINK_ETHERNET = 0, LINK_RAW = 1, LINK_SLL = 2, LINK_SLL2 = 3 };

/* Offset of the IP header in a frame of this link kind whose ethertype says IPv4 or IPv6
   (raw IP: 0; the version is checked later), or -1: not IP, cut short, or more than four
   VLAN tags (Python reads those). */
static int ip_offset(const uint8_t *d, uint32_t caplen, int link) {
    uint32_t o, et;
    switch (link) {
    case LINK_ETHERNET:
        if (caplen < 14)
            return -1;
        et = be16(d + 12);
        o = 14;
        while (et == 0x8100 || et == 0x88A8 || et == 0x9100 || et == 0x9200) {
            if (caplen < o + 4 || o >= 14 + 4 * 4)
                return -1;
            et = be16(d + o + 2);
            o += 4;
        }
        return et == 0x0800 || et == 0x86DD ? (int)o : -1;
    case LINK_RAW:
        return 0;
    case LINK_SLL:
        return caplen >= 16 && (be16(d + 14) == 0x0800 || be16(d + 14) == 0x86DD) ? 16 : -1;
    case LINK_SLL2:
        return caplen >= 20 && (be16(d) == 0x0800 || be16(d) == 0x86DD) ? 20 : -1;
    default:
        return -1;
    }
}

/* One frame at f (caplen bytes, time ts, link kind): 1 when booked (a registered flow) or
   skipped (another share's), 0 when Python must read it, -1 on a Python error. */
static int take_frame(BulkTable *t, const uint8_t *f, uint32_t caplen, int64_t ts, int link) {
    if (ts >= t->next_sweep)
        return 0;
    int at = ip_offset(f, caplen, link);
    if (at < 0 || caplen < (uint32_t)at + 20)
        return 0;
    /* from here on, d is the IP header and n what the frame holds of it and after */
    const uint8_t *d = f + at;
    uint32_t n = caplen - (uint32_t)at;
    int v6 = (d[0] >> 4) == 6;
    if (!v6 && (d[0] >> 4) != 4)
        return 0;
    if (v6 && n < 40)
        return 0;
    /* l4: the transport header; ip_end: the end of the IP packet; whole: a packet Python
       decodes without an anomaly (not a fragment, nothing cut by the snap length). An
       IPv6 packet with extension headers is not taken here (its next header is not 6/17) */
    uint32_t l4, proto, ip_end;
    int whole;
    if (v6) {
        l4 = 40;
        proto = d[6];
        ip_end = 40 + be16(d + 4);
        whole = ip_end > 40 && ip_end <= n;
    } else {
        l4 = (uint32_t)(d[0] & 15) << 2;
        proto = d[9];
        ip_end = be16(d + 2);
        whole = l4 >= 20 && ip_end >= l4 && ip_end <= n && !(be16(d + 6) & 0x3FFF);
    }
    size_t alen = v6 ? 16 : 4;
    const uint8_t *src = d + (v6 ? 8 : 12), *dst = src + alen;
    if (t->part_count > 1 && whole && (proto == 6 || proto == 17)) {
        /* another process's flow: skipped (DNS answers, from UDP port 53, are read by every
           process: the names they give are needed by all of them) */
        int clean = proto == 17 ? l4 + 8 <= ip_end
                                : l4 + 20 <= ip_end && (d[l4 + 12] >> 4) >= 5
                                      && l4 + ((uint32_t)(d[l4 + 12] >> 4) << 2) <= ip_end;
        if (clean && !(proto == 17 && be16(d + l4) == 53)
            && share_of(src, dst, d + l4, d + l4 + 2, alen, t->part_count)
                   != t->part_index) {
            t->packets++;
            t->bytes += caplen;
            t->skipped++;
            if (proto == 6) {
                t->clock = ts;
                t->has_clock = 1;
            }
            return 1;
        }
    }
    /* a TCP segment of a registered flow: IPv4 without options, whole headers */
    if (!whole || proto != 6 || l4 + 20 > ip_end || (!v6 && d[0] != 0x45))
        return 0;
    uint8_t key[KEY_LEN];
    memset(key, 0, KEY_LEN);
    key[0] = v6 ? 6 : 4;
    memcpy(key + 1, src, 2 * alen);
    memcpy(key + 1 + 2 * alen, d + l4, 4);
    uint32_t h = hash_key(t, key);
    int64_t si = find_slot(t, key, h);
    if (si < 0)
        return 0;
    uint32_t sv = t->slots[si] - 1;
    entry_t *e = &t->entries[sv >> 1];
    side_t *me = &e->side[sv & 1];
    if (!me->active)
        return 0;
    const uint8_t *tcp = d + l4;
    uint32_t doff = (uint32_t)(tcp[12] >> 4) << 2;
    if ((tcp[13] & 7) || doff < 20 || l4 + doff > ip_end)
        return 0; /* SYN/FIN/RST, a bad TCP header: Python's full path */
    PyObject *res = PyObject_CallOneArg(t->move_to_end, e->fid);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    e->last_ts = ts;
    e->booked = 1;
    me->packets++;
    if (!me->has_first_ts) {
        me->has_first_ts = 1;
        me->first_ts = ts;
    }
    me->last_ts = ts;
    if (e->rst_seen)
        me->after_rst++;
    uint8_t ttl = v6 ? d[7] : d[8];
    me->last_ttl = ttl;
    int i;
    for (i = 0; i < me->nttl; i++) {
        if (me->ttl_val[i] == ttl) {
            me->ttl_cnt[i]++;
            break;
        }
    }
    if (i == me->nttl && me->nttl < MAX_TTLS) {
        me->ttl_val[me->nttl] = ttl;
        me->ttl_cnt[me->nttl] = 1;
        me->nttl++;
    }
    if (!v6) { /* (IPv6 has no IP ID) */
        int32_t ip_id = (int32_t)be16(d + 4);
        me->last_ip_id = ip_id;
        if (!me->has_first_ip_id) {
            me->has_first_ip_id = 1;
            me->first_ip_id = ip_id;
        }
    }
    uint32_t len = ip_end - l4 - doff;
    if (len) {
        uint32_t seq = be32(tcp + 4);
        me->payload += len;
        if (!me->started) {
            me->started = 1;
            me->next_seq = seq;
        }
        /* signed distance mod 2^32, plus the length: how far the stream got */
        int64_t dist = (int64_t)(int32_t)(seq - me->next_seq) + len;
        if (dist > 0 && dist <= MAX_SEQ_DISTANCE) {
            me->offset_delta += dist;
            me->next_seq = seq + len;
        }
    }
    t->packets++;
    t->bytes += caplen;
    t->clock = ts;
    t->has_clock = 1;
    return 1;
}

/* walk_pcap(buf, pos, swap, ns_per_unit, extra, link) -> new pos. Books consecutive records
   of registered flows from pos; stops before the first record it cannot book. */
static PyObject *BulkTable_walk_pcap(BulkTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 6 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "walk_pcap(buf: bytes, pos, swap, unit, extra, link)");
        return NULL;
    }
    const uint8_t *buf = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    int swap = PyObject_IsTrue(args[2]);
    long unit = PyLong_AsLong(args[3]);
    long extra = PyLong_AsLong(args[4]);
    long link = PyLong_AsLong(args[5]);
    if (PyErr_Occurred())
        return NULL;
    if (pos < 0 || unit < 1 || unit > 1000 || extra < 0 || extra > 64 || link < 0 || link > 3) {
        PyErr_SetString(PyExc_ValueError, "walk_pcap: bad arguments");
        return NULL;
    }
    /* a little-endian host reads both byte orders: swap means "the other one" */
    Py_ssize_t rec_len = 16 + extra;
    while (pos + rec_len <= n) {
        const uint8_t *r = buf + pos;
        uint32_t sec = rd32(r, swap), frac = rd32(r + 4, swap);
        uint32_t caplen = rd32(r + 8, swap), origlen = rd32(r + 12, swap);
        if (caplen > MAX_PACKET_LEN || caplen > origlen)
            break;
        Py_ssize_t start = pos + rec_len, end = start + (Py_ssize_t)caplen;
        if (end > n)
            break;
        int64_t ts = (int64_t)sec * 1000000000LL + (int64_t)frac * unit;
        int took = take_frame(t, buf + start, caplen, ts, (int)link);
        if (took < 0)
            return NULL;
        if (!took)
            break;
        pos = end;
    }
    return PyLong_FromSsize_t(pos);
}

/* set_interfaces([(mul, offset_ns, link) or None, ...]): the pcapng section's interfaces
   whose packets walk_pcapng may take (ns = units * mul + offset_ns; link as walk_pcap's). */
static PyObject *BulkTable_set_interfaces(BulkTable *t, PyObject *arg) {
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "set_interfaces(list)");
        return NULL;
    }
    Py_ssize_t k = PyList_GET_SIZE(arg);
    if (k > MAX_IFACES)
        k = MAX_IFACES; /* packets of later interfaces take the Python path */
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *item = PyList_GET_ITEM(arg, i);
        t->iface_ok[i] = 0;
        if (item == Py_None)
            continue;
        long long mul, off;
        int link;
        if (!PyArg_ParseTuple(item, "LLi", &mul, &off, &link))
            return NULL;
        if (mul < 1 || link < 0 || link > 3) {
            PyErr_SetString(PyExc_ValueError, "an interface is (mul >= 1, offset, link 0..3)");
            return NULL;
        }
        t->iface_mul[i] = mul;
        t->iface_off[i] = off;
        t->iface_link[i] = link;
        t->iface_ok[i] = 1;
    }
    t->n_ifaces = (uint32_t)k;
    Py_RETURN_NONE;
}

/* walk_pcapng(buf, pos, swap) -> (pos, ts of the last packet taken or None): takes
   consecutive Enhanced Packet Blocks of set_interfaces()'s interfaces, as walk_pcap. */
static PyObject *BulkTable_walk_pcapng(BulkTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "walk_pcapng(buf: bytes, pos, swap)");
        return NULL;
    }
    const uint8_t *buf = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    int swap = PyObject_IsTrue(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (pos < 0) {
        PyErr_SetString(PyExc_ValueError, "walk_pcapng: bad position");
        return NULL;
    }
    int64_t last = 0;
    int took_any = 0;
    while (pos + 32 <= n) {
        const uint8_t *b = buf + pos;
        uint32_t btype = rd32(b, swap), blen = rd32(b + 4, swap);
        if (btype != 6 || blen < 32 || (blen & 3) || blen > MAX_BLOCK_LEN)
            break;
        Py_ssize_t end = pos + (Py_ssize_t)blen;
        if (end > n || rd32(buf + end - 4, swap) != blen)
            break;
        uint32_t iface = rd32(b + 8, swap), hi = rd32(b + 12, swap), lo = rd32(b + 16, swap);
        uint32_t caplen = rd32(b + 20, swap), origlen = rd32(b + 24, swap);
        if ((uint64_t)caplen + 28 > (uint64_t)blen - 4 || caplen > origlen
            || iface >= t->n_ifaces || !t->iface_ok[iface])
            break;
        uint64_t units = (uint64_t)hi << 32 | lo;
        int64_t ts;
        if (units > (uint64_t)INT64_MAX
            || __builtin_mul_overflow((int64_t)units, t->iface_mul[iface], &ts)
            || __builtin_add_overflow(ts, t->iface_off[iface], &ts))
            break; /* beyond 64 bits: Python's integers take it */
        int took = take_frame(t, b + 28, caplen, ts, t->iface_link[iface]);
        if (took < 0)
            return NULL;
        if (!took)
            break;
        last = ts;
        took_any = 1;
        pos = end;
    }
    if (!took_any)
        return Py_BuildValue("(nO)", pos, Py_None);
    return Py_BuildValue("(nL)", pos, (long long)last);
}

static PyObject *BulkTable_set_next_sweep(BulkTable *t, PyObject *arg) {
    int64_t v = PyLong_AsLongLong(arg); /* the caller clamps to 64 bits */
    if (v == -1 && PyErr_Occurred())
        return NULL;
    t->next_sweep = v;
    Py_RETURN_NONE;
}

static PyObject *BulkTable_set_share(BulkTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_share(index, count)");
        return NULL;
    }
    long index = PyLong_AsLong(args[0]), count = PyLong_AsLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    if (count < 1 || count > 1024 || index < 0 || index >= count) {
        PyErr_SetString(PyExc_ValueError, "a share is 0 <= index < count <= 1024");
        return NULL;
    }
    t->part_index = (uint32_t)index;
    t->part_count = (uint32_t)count;
    Py_RETURN_NONE;
}

static PyObject *bulkbook_share_of(PyObject *Py_UNUSED(m), PyObject *const *args,
                                   Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0])
        || (PyBytes_GET_SIZE(args[0]) != 12 && PyBytes_GET_SIZE(args[0]) != 36)) {
        PyErr_SetString(PyExc_TypeError, "share_of(src+dst+sport+dport: 12 or 36 bytes, count)");
        return NULL;
    }
    long count = PyLong_AsLong(args[1]);
    if (count == -1 && PyErr_Occurred())
        return NULL;
    if (count < 1) {
        PyErr_SetString(PyExc_ValueError, "count must be at least 1");
        return NULL;
    }
    const uint8_t *k = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    size_t alen = PyBytes_GET_SIZE(args[0]) == 12 ? 4 : 16;
    return PyLong_FromUnsignedLong(
        share_of(k, k + alen, k + 2 * alen, k + 2 * alen + 2, alen, (uint32_t)count));
}

static PyObject *BulkTable_tick(BulkTable *t, PyObject *Py_UNUSED(ignored)) {
    t->has_clock = 0; /* the last TCP packet is Python's: it keeps the time */
    Py_RETURN_NONE;
}

static PyObject *BulkTable_clock(BulkTable *t, PyObject *Py_UNUSED(ignored)) {
    if (!t->has_clock)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(t->clock);
}

static PyObject *BulkTable_counters(BulkTable *t, PyObject *Py_UNUSED(ignored)) {
    return Py_BuildValue("(KKK)", t->packets, t->bytes, t->skipped);
}

static Py_ssize_t BulkTable_len(BulkTable *t) { return (Py_ssize_t)t->used; }

static int BulkTable_init(BulkTable *t, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"lru", "max_flows", "seed", NULL};
    PyObject *lru;
    Py_ssize_t max_flows;
    unsigned long long seed;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OnK", kwlist, &lru, &max_flows, &seed))
        return -1;
    if (t->entries != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "BulkTable is initialised once");
        return -1;
    }
    if (max_flows < 1)
        max_flows = 1;
    if (max_flows > MAX_ENTRIES)
        max_flows = MAX_ENTRIES;
    PyObject *mte = PyObject_GetAttrString(lru, "move_to_end");
    if (mte == NULL)
        return -1;
    uint32_t nslots = 16;
    while (nslots < 4 * (uint32_t)max_flows)
        nslots <<= 1;
    /* calloc: pages of the big arrays are only touched as flows register */
    t->entries = PyMem_RawCalloc((size_t)max_flows, sizeof(entry_t));
    t->slots = PyMem_RawCalloc(nslots, sizeof(uint32_t));
    t->slot_hash = PyMem_RawCalloc(nslots, sizeof(uint32_t));
    if (!t->entries || !t->slots || !t->slot_hash) {
        Py_DECREF(mte);
        PyErr_NoMemory();
        return -1;
    }
    t->n_entries = (uint32_t)max_flows;
    t->free_head = UINT32_MAX; /* entries are taken from hwm until some are freed */
    t->hwm = 0;
    t->mask = nslots - 1;
    t->seed = seed;
    t->next_sweep = INT64_MIN;
    t->part_index = 0;
    t->part_count = 1;
    Py_INCREF(lru);
    t->lru = lru;
    t->move_to_end = mte;
    return 0;
}

static int BulkTable_traverse(BulkTable *t, visitproc visit, void *arg) {
    Py_VISIT(t->lru);
    Py_VISIT(t->move_to_end);
    return 0;
}

static int BulkTable_clear(BulkTable *t) {
    Py_CLEAR(t->lru);
    Py_CLEAR(t->move_to_end);
    return 0;
}

static void BulkTable_dealloc(BulkTable *t) {
    PyObject_GC_UnTrack(t);
    BulkTable_clear(t);
    if (t->entries != NULL) {
        for (uint32_t i = 0; i < t->hwm; i++)
            Py_CLEAR(t->entries[i].fid);
        PyMem_RawFree(t->entries);
    }
    PyMem_RawFree(t->slots);
    PyMem_RawFree(t->slot_hash);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static PyMethodDef BulkTable_methods[] = {
    {"add", (PyCFunction)(void (*)(void))BulkTable_add, METH_FASTCALL,
     "add(client_key, server_key, fid, last_ts, rst_seen, client_state, server_state) -> bool"},
    {"pop", (PyCFunction)BulkTable_pop, METH_O,
     "pop(key) -> (last_ts, client_delta, server_delta) or None"},
    {"pop_stale", (PyCFunction)BulkTable_pop_stale, METH_O,
     "pop_stale(deadline) -> [(fid, (last_ts, client_delta, server_delta))]"},
    {"walk_pcap", (PyCFunction)(void (*)(void))BulkTable_walk_pcap, METH_FASTCALL,
     "walk_pcap(buf, pos, swap, ns_per_unit, extra, link) -> pos"},
    {"walk_pcapng", (PyCFunction)(void (*)(void))BulkTable_walk_pcapng, METH_FASTCALL,
     "walk_pcapng(buf, pos, swap) -> (pos, last ts taken or None)"},
    {"set_interfaces", (PyCFunction)BulkTable_set_interfaces, METH_O,
     "set_interfaces([(mul, offset_ns, link) or None]): interfaces walk_pcapng may take"},
    {"set_next_sweep", (PyCFunction)BulkTable_set_next_sweep, METH_O,
     "set_next_sweep(ts): walk_pcap stops before a record at or after ts"},
    {"counters", (PyCFunction)BulkTable_counters, METH_NOARGS,
     "counters() -> (packets, bytes, skipped): records consumed so far (booked, or skipped as another share's), their bytes, and how many were skipped"},
    {"tick", (PyCFunction)BulkTable_tick, METH_NOARGS,
     "tick(): Python read a TCP packet (its time is later than clock()'s)"},
    {"clock", (PyCFunction)BulkTable_clock, METH_NOARGS,
     "clock() -> time of the last TCP packet if this walker took it (booked, or skipped as another share's), else None"},
    {"set_share", (PyCFunction)(void (*)(void))BulkTable_set_share, METH_FASTCALL,
     "set_share(index, count): skip IPv4 TCP/UDP packets of flows of other shares"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods BulkTable_as_sequence = {
    .sq_length = (lenfunc)BulkTable_len,
};

static PyTypeObject BulkTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tlswatch.capture._bulkbook.BulkTable",
    .tp_doc = "Registered flows whose bulk packets are booked in C (see the module).",
    .tp_basicsize = sizeof(BulkTable),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)BulkTable_init,
    .tp_dealloc = (destructor)BulkTable_dealloc,
    .tp_traverse = (traverseproc)BulkTable_traverse,
    .tp_clear = (inquiry)BulkTable_clear,
    .tp_methods = BulkTable_methods,
    .tp_as_sequence = &BulkTable_as_sequence,
};

static PyMethodDef bulkbook_functions[] = {
    {"share_of", (PyCFunction)(void (*)(void))bulkbook_share_of, METH_FASTCALL,
     "share_of(src + dst + sport + dport, count) -> share (as the walker computes it)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef bulkbook_module = {
    PyModuleDef_HEAD_INIT,
    .m_methods = bulkbook_functions,
    .m_name = "_bulkbook",
    .m_doc = "C fast path booking bulk packets of finished flows (tlswatch.capture.tcp).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__bulkbook(void) {
    crc_init();
    if (PyType_Ready(&BulkTableType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&bulkbook_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&BulkTableType);
    if (PyModule_AddObject(m, "BulkTable", (PyObject *)&BulkTableType) < 0) {
        Py_DECREF(&BulkTableType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
