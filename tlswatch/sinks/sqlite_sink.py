"""SQLite: the embedded default store for dashboards (Grafana, Superset, notebooks).

Tables (``docs/sinks.md`` has the full schema):

* ``runs``: every run record as written (a run has an opening and a closing row; the view
  ``runs_latest`` keeps the last row of each ``run_id``);
* ``measurements``: one row per observation: the flat columns plus the whole record as
  JSON (``record``), ``id`` unique, so a resumed or re-converted run never duplicates
  (``INSERT OR IGNORE``);
* ``certificates``: each presented certificate once, by SHA-256 of its DER;
* ``chain_links``: which certificates each measurement saw, in order (``role`` is ``seen``,
  ``control`` or ``control_sni``: the SNI control of a run with two controls);
* ``inputs``: the input records of ``tlswatch analyse`` (one per capture file analysed);
* ``extras``: records of any other ``kind`` (a later tlswatch), kept whole.

``seq`` orders the rows of ``runs``, ``measurements``, ``inputs`` and ``extras`` together,
so reading back gives the records in the order they were written. The database is in WAL
mode and records are committed one transaction per batch: a process killed mid-write loses
at most the uncommitted batch and never leaves a database SQLite cannot open; readers (a
dashboard) can query while a probe writes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import json
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tlswatch.sinks.base import RecordError, SinkError, record_dict
from tlswatch.sinks.flat import COLUMNS, JOIN, clean_text, flatten

__all__ = [
    "INPUT_COLUMNS",
    "MEASUREMENT_COLUMNS",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "SqliteSink",
    "connect_readonly",
    "iter_store",
    "schema_sql",
]

SCHEMA_VERSION = 1

_SQL_TYPES = {"str": "TEXT", "int": "INTEGER", "float": "REAL", "bool": "INTEGER",
              "time": "TEXT"}
# Flat columns of a measurement row: all but the row kind and the run- and input-only ones.
MEASUREMENT_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in COLUMNS
    if (c.name != "kind" and not c.name.startswith(("run_", "input_"))) or c.name == "run_id")
# runs table column -> flat column it is taken from.
RUN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "run_id"), ("started", "time"), ("ended", "run_ended"), ("tool", "run_tool"),
    ("tool_version", "run_tool_version"), ("command", "run_command"),
    ("resumed", "run_resumed"), ("rules_version", "rules_version"),
    ("registry_version", "run_registry_version"), ("stores", "stores"),
    ("store_versions", "store_versions"), ("openssl", "run_openssl"),
    ("vantage_name", "vantage_name"), ("vantage_kind", "vantage_kind"),
)
# inputs table column -> flat column.
INPUT_COLUMNS: tuple[tuple[str, str], ...] = (("run_id", "run_id"), *(
    (c.name.removeprefix("input_"), c.name) for c in COLUMNS if c.name.startswith("input_")))
_TYPE_OF = {c.name: _SQL_TYPES[c.type] for c in COLUMNS}
# Record tables merged by seq when reading; the first two always exist in a tlswatch store.
_RECORD_TABLES = ("runs", "measurements", "inputs", "extras")
# Record keys of controls whose chains go to chain_links; the key is the link's role.
_CONTROL_ROLES = ("control", "control_sni")
_INDEXED = ("time", "target_domain", "verdict", "outcome_class", "interception_label",
            "vantage_name", "run_id")


def schema_sql() -> list[str]:
    """The statements that create the store (all ``IF NOT EXISTS``)."""
    m_cols = ",\n  ".join(f"{c} {_TYPE_OF[c]}" for c in MEASUREMENT_COLUMNS if c != "id")
    r_cols = ",\n  ".join(f"{name} {_TYPE_OF[flat]}" for name, flat in RUN_COLUMNS)
    i_cols = ",\n  ".join(f"{name} {_TYPE_OF[flat]}" for name, flat in INPUT_COLUMNS)
    stmts = [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS runs (\n  seq INTEGER PRIMARY KEY,\n  {r_cols},\n"
        "  record TEXT NOT NULL\n)",
        "CREATE INDEX IF NOT EXISTS runs_run_id ON runs(run_id)",
        "CREATE VIEW IF NOT EXISTS runs_latest AS SELECT * FROM runs WHERE seq IN "
        "(SELECT max(seq) FROM runs GROUP BY run_id)",
        f"CREATE TABLE IF NOT EXISTS measurements (\n  seq INTEGER PRIMARY KEY,\n"
        f"  id TEXT NOT NULL UNIQUE,\n  {m_cols},\n  record TEXT NOT NULL\n)",
        "CREATE TABLE IF NOT EXISTS certificates (\n  sha256 TEXT PRIMARY KEY,\n  der BLOB,\n"
        "  subject TEXT,\n  issuer TEXT,\n  serial TEXT,\n  not_before TEXT,\n"
        "  not_after TEXT,\n  key_type TEXT,\n  key_bits INTEGER,\n  key_exponent INTEGER,\n"
        "  key_curve TEXT,\n  spki_sha256 TEXT,\n  sans TEXT,\n  self_signed INTEGER\n)",
        "CREATE TABLE IF NOT EXISTS chain_links (\n  measurement_id TEXT NOT NULL,\n"
        "  role TEXT NOT NULL,\n  position INTEGER NOT NULL,\n  sha256 TEXT NOT NULL,\n"
        "  PRIMARY KEY (measurement_id, role, position)\n) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS chain_links_sha256 ON chain_links(sha256)",
        f"CREATE TABLE IF NOT EXISTS inputs (\n  seq INTEGER PRIMARY KEY,\n  {i_cols},\n"
        "  record TEXT NOT NULL\n)",
        "CREATE INDEX IF NOT EXISTS inputs_sha256 ON inputs(sha256)",
        "CREATE TABLE IF NOT EXISTS extras (\n  seq INTEGER PRIMARY KEY,\n  kind TEXT,\n"
        "  run_id TEXT,\n  record TEXT NOT NULL\n)",
    ]
    stmts += [f"CREATE INDEX IF NOT EXISTS measurements_{c} ON measurements({c})"
              for c in _INDEXED]
    return stmts


def _db_error(path: Path, e: sqlite3.Error) -> SinkError:
    return SinkError(f"{path}: not a usable SQLite database ({e})")


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection that never creates or changes ``path``."""
    if not path.is_file():
        raise SinkError(f"{path}: cannot read (no such file)")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as e:
        raise _db_error(path, e) from None
    return conn


def _cert_row(c: Mapping[str, Any]) -> tuple[Any, ...] | None:
    der: bytes | None = None
    raw = c.get("der_b64")
    if isinstance(raw, str):
        try:
            der = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            der = None
    # The hash of the DER itself when we have it: a record's own sha256 is only a claim.
    sha = hashlib.sha256(der).hexdigest() if der is not None else c.get("sha256")
    if not isinstance(sha, str) or not sha:
        return None
    raw_key = c.get("key")
    key: Mapping[str, Any] = raw_key if isinstance(raw_key, Mapping) else {}

    def text(v: Any) -> str | None:
        return clean_text(v) if isinstance(v, str) and v else None

    def integer(v: Any) -> int | None:
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    sans = c.get("sans")
    return (sha, der, text(c.get("subject")), text(c.get("issuer")), text(c.get("serial")),
            text(c.get("not_before")), text(c.get("not_after")), text(key.get("type")),
            integer(key.get("bits")), integer(key.get("exponent")), text(key.get("curve")),
            text(c.get("spki_sha256")),
            clean_text(JOIN.join(s for s in sans if isinstance(s, str)))
            if isinstance(sans, list) and sans else None,
            int(c["self_signed"]) if isinstance(c.get("self_signed"), bool) else None)


class SqliteSink:
    """Append records to a tlswatch SQLite store (created when new; WAL mode)."""

    def __init__(self, path: Path, *, batch: int = 32) -> None:
        self.path = path
        self._batch = max(1, batch)
        self._buf: list[dict[str, Any]] = []
        self.duplicates = 0  # measurements already in the store (ignored)
        if path.is_dir():
            raise IsADirectoryError(21, "Is a directory")
        try:
            # isolation_level None: we issue BEGIN/COMMIT ourselves, one per batch.
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                path, isolation_level=None, timeout=30)
            self._setup()
        except sqlite3.Error as e:
            raise _db_error(path, e) from None

    def _setup(self) -> None:
        conn = self._db
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        if tables and "measurements" not in tables:
            raise SinkError(f"{self.path}: a SQLite database that is not a tlswatch store "
                            "(no measurements table): not writing to it")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SinkError(f"{self.path}: cannot switch the database to WAL mode ({mode})")
        # NORMAL in WAL mode: every commit is atomic and survives a killed process; the
        # WAL is fsync-ed at checkpoints (see checkpoint()).
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            stmts = schema_sql()
            for stmt in stmts:
                if not stmt.startswith("CREATE INDEX"):
                    conn.execute(stmt)
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise SinkError(f"{self.path}: written by a newer tlswatch (store schema "
                                f"{row[0]}): not writing to it")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
            # Columns are added over time: give an older store the new ones.
            have = {r[1] for r in conn.execute("PRAGMA table_info(measurements)")}
            for c in MEASUREMENT_COLUMNS:
                if c not in have:
                    conn.execute(f"ALTER TABLE measurements ADD COLUMN {c} {_TYPE_OF[c]}")
            for table, columns in (("runs", RUN_COLUMNS), ("inputs", INPUT_COLUMNS)):
                have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                for name, flat in columns:
                    if name not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {_TYPE_OF[flat]}")
            for stmt in stmts:  # indexes last: they may be on columns just added
                if stmt.startswith("CREATE INDEX"):
                    conn.execute(stmt)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._seq = max(int(conn.execute(f"SELECT coalesce(max(seq), 0) FROM {t}").fetchone()[0])
                        for t in _RECORD_TABLES)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"{self.path}: sink is closed")
        return self._conn

    def write(self, record: Any) -> None:
        d = record_dict(record)
        if d.get("kind") in (None, "measurement") and not isinstance(d.get("id"), str):
            raise RecordError("a measurement without an id cannot go to SQLite")
        self._buf.append(d)
        if len(self._buf) >= self._batch:
            self.flush()

    def flush(self) -> None:
        """Commit the buffered records as one transaction."""
        if not self._buf:
            return
        conn = self._db
        batch, self._buf = self._buf, []
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for d in batch:
                    self._insert(conn, d)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise SinkError(f"{self.path}: cannot write ({e})") from None

    def _insert(self, conn: sqlite3.Connection, d: dict[str, Any]) -> None:
        self._seq += 1
        flat = flatten(d)
        text = json.dumps(d, ensure_ascii=True, separators=(",", ":"))
        kind = d.get("kind")
        if kind in ("run", "input"):
            table, columns = ("runs", RUN_COLUMNS) if kind == "run" else ("inputs", INPUT_COLUMNS)
            names = ", ".join(n for n, _ in columns)
            conn.execute(
                f"INSERT INTO {table} (seq, {names}, record) VALUES "
                f"({', '.join('?' * (len(columns) + 2))})",
                (self._seq, *(flat.get(f) for _, f in columns), text))
            return
        if kind not in (None, "measurement"):
            conn.execute("INSERT INTO extras VALUES (?, ?, ?, ?)",
                         (self._seq, str(kind), flat.get("run_id"), text))
            return
        cur = conn.execute(
            f"INSERT OR IGNORE INTO measurements (seq, {', '.join(MEASUREMENT_COLUMNS)}, "
            f"record) VALUES ({', '.join('?' * (len(MEASUREMENT_COLUMNS) + 2))})",
            (self._seq, *(flat.get(c) for c in MEASUREMENT_COLUMNS), text))
        if cur.rowcount != 1:
            self.duplicates += 1
            return
        mid = d["id"]
        chains = [("seen", d.get("chain"))]
        for role in _CONTROL_ROLES:
            ctl = d.get(role)
            chains.append((role, ctl.get("chain") if isinstance(ctl, Mapping) else None))
        for role, chain in chains:
            if not isinstance(chain, list):
                continue
            for pos, c in enumerate(chain):
                row = _cert_row(c) if isinstance(c, Mapping) else None
                if row is None:
                    continue
                conn.execute("INSERT OR IGNORE INTO certificates VALUES "
                             "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                conn.execute("INSERT OR IGNORE INTO chain_links VALUES (?, ?, ?, ?)",
                             (mid, role, pos, row[0]))

    def checkpoint(self) -> None:
        """Commit, then fsync the WAL (a passive WAL checkpoint syncs it first)."""
        self.flush()
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as e:
            raise SinkError(f"{self.path}: cannot checkpoint ({e})") from None

    def close(self) -> None:
        if self._conn is None:
            return
        try:
            self.checkpoint()
        finally:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> SqliteSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_store(path: Path) -> Iterator[tuple[str, int, str]]:
    """(table, seq, record JSON) of every record, in write order."""
    conn = connect_readonly(path)
    try:
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}
        if "measurements" not in tables or "runs" not in tables:
            raise SinkError(f"{path}: not a tlswatch SQLite store (no measurements/runs tables)")

        def rows(table: str) -> Iterator[tuple[int, str, str]]:
            for seq, text in conn.cursor().execute(
                    f"SELECT seq, record FROM {table} ORDER BY seq"):
                yield seq, table, text

        # Ordered cursors merged by seq: streaming, no sort of the whole store.
        merged = heapq.merge(*(rows(t) for t in _RECORD_TABLES if t in tables))
        for seq, table, text in merged:
            yield table, seq, text
    except sqlite3.Error as e:
        raise _db_error(path, e) from None
    finally:
        conn.close()

