"""What survives a restart: presets, attendance, roll calls, issued tokens, the recordings index
(ARCHITECTURE.md, State).

One SQLite file (``huishang.sqlite3``) in the data directory, in WAL mode so that readers never
wait for the writer and two processes (the server and ``huishang token``) can share it. The
schema is versioned with ``PRAGMA user_version`` and migrated forward on open. Every method is
one short transaction, synchronous and quick enough (well under a millisecond on a warm file)
to call from the event loop; a busy file is waited for up to :data:`BUSY_TIMEOUT_S`.

Times are POSIX timestamps (seconds, ``float``) in the database and ISO 8601 local times with
their UTC offset in exports.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

from signalling.model import SiteId
from web.tokens import parse_hash

__all__ = [
    "BUSY_TIMEOUT_S",
    "DB_FILENAME",
    "SCHEMA_VERSION",
    "Attendance",
    "Conference",
    "ConferenceExistsError",
    "Presence",
    "RecordingEntry",
    "RollcallRecord",
    "RollcallResult",
    "Store",
    "StoreError",
    "UnknownConferenceError",
]

logger = logging.getLogger(__name__)

DB_FILENAME: Final = "huishang.sqlite3"
BUSY_TIMEOUT_S: Final = 10.0
MAX_PRESET_NAME: Final = 200
RollcallResult = Literal["acked", "missed"]
_RESULTS: Final = ("acked", "missed")

#: Migration *n* takes the schema from version *n* to *n + 1*.
_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE presets (
        name     TEXT PRIMARY KEY,
        layout   TEXT NOT NULL,           -- JSON (PROTOCOL.md <layout>)
        saved_at REAL NOT NULL
    );
    CREATE TABLE conferences (
        id         TEXT PRIMARY KEY,
        title      TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at   REAL
    );
    CREATE TABLE presence (
        id            INTEGER PRIMARY KEY,
        conference_id TEXT NOT NULL REFERENCES conferences(id),
        site_id       TEXT NOT NULL,
        joined_at     REAL NOT NULL,
        left_at       REAL             -- NULL while the site is in the conference
    );
    CREATE INDEX presence_by_site ON presence (conference_id, site_id, joined_at);
    CREATE TABLE rollcalls (
        id            INTEGER PRIMARY KEY,
        conference_id TEXT NOT NULL REFERENCES conferences(id),
        round_no      INTEGER NOT NULL,
        site_id       TEXT NOT NULL,
        result        TEXT NOT NULL CHECK (result IN ('acked', 'missed')),
        at            REAL NOT NULL
    );
    CREATE INDEX rollcalls_by_conference ON rollcalls (conference_id, site_id, at);
    CREATE TABLE tokens (
        site_id   TEXT PRIMARY KEY,
        hash      TEXT NOT NULL,            -- web/tokens.py format
        issued_at REAL NOT NULL
    );
    """,
    """
    CREATE TABLE IF NOT EXISTS recordings (
        id            INTEGER PRIMARY KEY,
        conference_id TEXT NOT NULL REFERENCES conferences(id),
        file          TEXT NOT NULL UNIQUE,   -- a file name in <data_dir>/recordings
        source        TEXT NOT NULL,          -- what was recorded: a wall output, "programme"
        started_at    REAL NOT NULL,
        ended_at      REAL,                   -- NULL while recording (or if the process died)
        duration_s    REAL NOT NULL DEFAULT 0,
        size          INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS recordings_by_conference ON recordings (conference_id, started_at);
    """,
    """
    -- presets deleted by the operator, so a shipped one (config/layouts.toml) stays deleted
    CREATE TABLE IF NOT EXISTS deleted_presets (
        name       TEXT PRIMARY KEY,
        deleted_at REAL NOT NULL
    );
    """,
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)


class StoreError(Exception):
    """The store cannot be used: unreadable file, not a database, schema from a newer version.

    Subclasses: :class:`UnknownConferenceError` (also a :class:`LookupError`),
    :class:`ConferenceExistsError` (also a :class:`ValueError`).
    """


class UnknownConferenceError(StoreError, LookupError):
    """No conference with this id was started."""

    def __init__(self, conference_id: str) -> None:
        self.conference_id = conference_id
        super().__init__(f"no conference {conference_id!r}")


class ConferenceExistsError(StoreError, ValueError):
    """A conference with this id was already started."""

    def __init__(self, conference_id: str) -> None:
        self.conference_id = conference_id
        super().__init__(f"conference {conference_id!r} already exists")


@dataclass(frozen=True, slots=True)
class Conference:
    id: str
    title: str
    started_at: float
    ended_at: float | None


@dataclass(frozen=True, slots=True)
class Presence:
    """One interval a site spent in the conference (``left_at`` is ``None`` while it is in)."""

    joined_at: float
    left_at: float | None


@dataclass(frozen=True, slots=True)
class RollcallRecord:
    """A site's outcome in one roll-call round (点名签到)."""

    round_no: int
    result: RollcallResult
    at: float


@dataclass(frozen=True, slots=True)
class RecordingEntry:
    """One recording in the index: its file (a name inside the recordings folder), what it
    recorded, when, how long (the media's own duration) and how big. ``ended_at`` is ``None``
    while it is being recorded, or when the process died before it could finish it."""

    id: int
    conference_id: str
    file: str
    source: str
    started_at: float
    ended_at: float | None
    duration_s: float
    size: int


@dataclass(frozen=True, slots=True)
class Attendance:
    """One site's record in one conference."""

    site_id: SiteId
    presence: tuple[Presence, ...]
    rollcalls: tuple[RollcallRecord, ...]


class Store:
    """The SQLite store in the database file *path* (created with its folders if missing);
    :meth:`in_data_dir` opens the usual file, ``<data_dir>/huishang.sqlite3``.

    Thread-safe (one connection behind a lock); use as a context manager or call
    :meth:`close`, which is idempotent.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open: {exc}") from exc
        self._conn: sqlite3.Connection | None = conn
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            self._conn = None
            raise StoreError(f"{self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this program's "
                    f"({SCHEMA_VERSION}); upgrade Huishang"
                )
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {step + 1}")
                logger.info("store %s: schema version %d", self.path, step + 1)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Store:
        """The store of a data directory: ``<data_dir>/huishang.sqlite3``."""
        return cls(Path(data_dir) / DB_FILENAME)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _tx(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction: ``IMMEDIATE`` for writes, ``DEFERRED`` for consistent reads."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError(f"{self.path}: store is closed")
            conn.execute(f"BEGIN {mode}")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- presets --------------------------------------------------------------------------

    def save_preset(self, name: str, layout: Mapping[str, object]) -> None:
        """Save (or replace) a wall layout preset under *name*."""
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_PRESET_NAME:
            raise ValueError(f"preset name must be 1..{MAX_PRESET_NAME} characters")
        if not isinstance(layout, Mapping):
            raise TypeError("layout must be a mapping")
        text = json.dumps(dict(layout), ensure_ascii=False, allow_nan=False, sort_keys=True)
        with self._tx() as conn:
            conn.execute("DELETE FROM deleted_presets WHERE name = ?", (name,))
            conn.execute(
                "INSERT INTO presets (name, layout, saved_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET layout = excluded.layout,"
                " saved_at = excluded.saved_at",
                (name, text, time.time()),
            )

    def presets(self) -> dict[str, dict[str, object]]:
        """All presets by name (sorted)."""
        with self._tx("DEFERRED") as conn:
            rows = conn.execute("SELECT name, layout FROM presets ORDER BY name").fetchall()
        return {name: json.loads(text) for name, text in rows}

    def preset(self, name: str) -> dict[str, object] | None:
        """The preset called *name*, or ``None``."""
        with self._tx("DEFERRED") as conn:
            row = conn.execute("SELECT layout FROM presets WHERE name = ?", (name,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def delete_preset(self, name: str) -> bool:
        """Delete a preset; whether it existed here. The name is remembered as deleted
        (:meth:`deleted_presets`), so a shipped preset of that name stays deleted after a
        restart, until a preset is saved under it again."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO deleted_presets (name, deleted_at) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET deleted_at = excluded.deleted_at",
                (name, time.time()),
            )
            return conn.execute("DELETE FROM presets WHERE name = ?", (name,)).rowcount > 0

    def deleted_presets(self) -> set[str]:
        """Names of presets deleted (and not saved again) since the store was made."""
        with self._tx("DEFERRED") as conn:
            rows = conn.execute("SELECT name FROM deleted_presets").fetchall()
        return {name for (name,) in rows}

    # -- conferences and attendance -----------------------------------------------------------

    def start_conference(self, conference_id: str, title: str, started_at: float) -> None:
        """Record a new conference (:class:`ConferenceExistsError` if the id is taken)."""
        with self._tx() as conn:
            try:
                conn.execute(
                    "INSERT INTO conferences (id, title, started_at) VALUES (?, ?, ?)",
                    (conference_id, title, float(started_at)),
                )
            except sqlite3.IntegrityError:
                raise ConferenceExistsError(conference_id) from None

    def end_conference(self, conference_id: str, ended_at: float) -> None:
        """Mark the conference ended and close every open presence interval at *ended_at*.

        Ending an ended conference changes nothing.
        """
        with self._tx() as conn:
            ended = self._ended_at(conn, conference_id)
            if ended is not None:
                return
            conn.execute(
                "UPDATE conferences SET ended_at = ? WHERE id = ?", (ended_at, conference_id)
            )
            conn.execute(
                "UPDATE presence SET left_at = ? WHERE conference_id = ? AND left_at IS NULL",
                (ended_at, conference_id),
            )

    def conferences(self) -> list[Conference]:
        """Every conference, oldest first."""
        with self._tx("DEFERRED") as conn:
            rows = conn.execute(
                "SELECT id, title, started_at, ended_at FROM conferences ORDER BY started_at, id"
            ).fetchall()
        return [Conference(*row) for row in rows]

    def conference(self, conference_id: str) -> Conference:
        """One conference (:class:`UnknownConferenceError` if none)."""
        with self._tx("DEFERRED") as conn:
            row = conn.execute(
                "SELECT id, title, started_at, ended_at FROM conferences WHERE id = ?",
                (conference_id,),
            ).fetchone()
        if row is None:
            raise UnknownConferenceError(conference_id)
        return Conference(*row)

    @staticmethod
    def _ended_at(conn: sqlite3.Connection, conference_id: str) -> float | None:
        row = conn.execute(
            "SELECT ended_at FROM conferences WHERE id = ?", (conference_id,)
        ).fetchone()
        if row is None:
            raise UnknownConferenceError(conference_id)
        return None if row[0] is None else float(row[0])

    def record_join(self, conference_id: str, site_id: str, at: float) -> bool:
        """A site joined. Whether a new interval opened (``False``: it was already in, e.g. a
        rejoin that replaced its stale session, so the interval simply continues)."""
        with self._tx() as conn:
            self._ended_at(conn, conference_id)
            if conn.execute(
                "SELECT 1 FROM presence WHERE conference_id = ? AND site_id = ?"
                " AND left_at IS NULL",
                (conference_id, site_id),
            ).fetchone():
                return False
            conn.execute(
                "INSERT INTO presence (conference_id, site_id, joined_at) VALUES (?, ?, ?)",
                (conference_id, site_id, float(at)),
            )
            return True

    def record_leave(self, conference_id: str, site_id: str, at: float) -> bool:
        """A site left. Whether it was in (``False``: no open interval, nothing changed)."""
        with self._tx() as conn:
            self._ended_at(conn, conference_id)
            cursor = conn.execute(
                "UPDATE presence SET left_at = MAX(?, joined_at) WHERE conference_id = ?"
                " AND site_id = ? AND left_at IS NULL",
                (float(at), conference_id, site_id),
            )
            return cursor.rowcount > 0

    def record_rollcall(
        self, conference_id: str, round_no: int, site_id: str, result: RollcallResult, at: float
    ) -> None:
        """A site's outcome in roll-call round *round_no* (counted from 1)."""
        if result not in _RESULTS:
            raise ValueError(f"roll-call result must be 'acked' or 'missed', got {result!r}")
        if isinstance(round_no, bool) or not isinstance(round_no, int) or round_no < 1:
            raise ValueError(f"roll-call round must be an integer ≥ 1, got {round_no!r}")
        with self._tx() as conn:
            self._ended_at(conn, conference_id)
            conn.execute(
                "INSERT INTO rollcalls (conference_id, round_no, site_id, result, at)"
                " VALUES (?, ?, ?, ?, ?)",
                (conference_id, round_no, site_id, result, float(at)),
            )

    def attendance(self, conference_id: str) -> list[Attendance]:
        """Every site that joined or was called in the conference, by site id."""
        with self._tx("DEFERRED") as conn:
            self._ended_at(conn, conference_id)
            presence = conn.execute(
                "SELECT site_id, joined_at, left_at FROM presence WHERE conference_id = ?"
                " ORDER BY site_id, joined_at, id",
                (conference_id,),
            ).fetchall()
            calls = conn.execute(
                "SELECT site_id, round_no, result, at FROM rollcalls WHERE conference_id = ?"
                " ORDER BY site_id, at, round_no, id",
                (conference_id,),
            ).fetchall()
        intervals: dict[str, list[Presence]] = {}
        for site_id, joined_at, left_at in presence:
            intervals.setdefault(site_id, []).append(Presence(joined_at, left_at))
        results: dict[str, list[RollcallRecord]] = {}
        for site_id, round_no, result, at in calls:
            results.setdefault(site_id, []).append(RollcallRecord(round_no, result, at))
        return [
            Attendance(
                SiteId(site_id),
                tuple(intervals.get(site_id, ())),
                tuple(results.get(site_id, ())),
            )
            for site_id in sorted(intervals.keys() | results.keys())
        ]

    def attendance_csv(
        self, conference_id: str, site_names: Mapping[str, str], *, tz: tzinfo | None = None
    ) -> str:
        """The attendance of one conference as CSV text that starts with a BOM (U+FEFF), so that
        Excel, given the text encoded as UTF-8, shows the Chinese names.

        Columns: ``site_id, site_name, joined_at, left_at, rollcall_round, rollcall_result,
        rollcall_at``. One row per presence interval, then one per roll-call result; a site of
        *site_names* with neither gets one row with empty cells (it never came). Sites come in
        *site_names*' order (give the directory's), then any others by id. Times are ISO 8601
        in *tz* (default: this machine's local zone) with their offset, to the second.
        """
        records = {a.site_id: a for a in self.attendance(conference_id)}
        order = list(site_names) + sorted(k for k in records if k not in site_names)
        out = io.StringIO()
        out.write("\ufeff")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(
            [
                "site_id",
                "site_name",
                "joined_at",
                "left_at",
                "rollcall_round",
                "rollcall_result",
                "rollcall_at",
            ]
        )
        for site_id in order:
            name = site_names.get(site_id, "")
            record = records.get(SiteId(site_id))
            if record is None or not (record.presence or record.rollcalls):
                writer.writerow([site_id, name, "", "", "", "", ""])
                continue
            for interval in record.presence:
                left = "" if interval.left_at is None else _iso(interval.left_at, tz)
                writer.writerow([site_id, name, _iso(interval.joined_at, tz), left, "", "", ""])
            for call in record.rollcalls:
                writer.writerow(
                    [site_id, name, "", "", call.round_no, call.result, _iso(call.at, tz)]
                )
        return out.getvalue()

    # -- tokens -------------------------------------------------------------------------------

    def set_token_hash(self, site_id: str, token_hash: str, at: float) -> None:
        """Store a token hash issued at run time; it overrides the configured one."""
        parse_hash(token_hash)  # ValueError if malformed
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO tokens (site_id, hash, issued_at) VALUES (?, ?, ?)"
                " ON CONFLICT (site_id) DO UPDATE SET hash = excluded.hash,"
                " issued_at = excluded.issued_at",
                (site_id, token_hash, float(at)),
            )

    def token_hashes(self) -> dict[str, str]:
        """Issued token hashes by site id."""
        with self._tx("DEFERRED") as conn:
            rows = conn.execute("SELECT site_id, hash FROM tokens ORDER BY site_id").fetchall()
        return {site_id: token_hash for site_id, token_hash in rows}

    # -- recordings ---------------------------------------------------------------------------

    def start_recording(
        self, conference_id: str, file: str, source: str, started_at: float
    ) -> RecordingEntry:
        """Index a recording that just started (:class:`UnknownConferenceError`; a *file*
        already indexed is a :class:`ValueError`). *file* is a plain file name."""
        if not file or "/" in file or "\\" in file or file in (".", ".."):
            raise ValueError(f"a recording's file must be a plain file name, got {file!r}")
        with self._tx() as conn:
            self._ended_at(conn, conference_id)
            try:
                cursor = conn.execute(
                    "INSERT INTO recordings (conference_id, file, source, started_at)"
                    " VALUES (?, ?, ?, ?)",
                    (conference_id, file, source, float(started_at)),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"recording file {file!r} is already indexed") from None
            row_id = cursor.lastrowid
        assert row_id is not None
        return RecordingEntry(row_id, conference_id, file, source, float(started_at), None, 0, 0)

    def finish_recording(
        self, recording_id: int, ended_at: float, duration_s: float, size: int
    ) -> bool:
        """Record a recording's end, media duration and file size; whether it was indexed."""
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE recordings SET ended_at = ?, duration_s = ?, size = ? WHERE id = ?",
                (float(ended_at), float(duration_s), int(size), recording_id),
            )
            return cursor.rowcount > 0

    def delete_recording(self, recording_id: int) -> bool:
        """Drop a recording from the index (its file is the caller's); whether it was there."""
        with self._tx() as conn:
            return conn.execute("DELETE FROM recordings WHERE id = ?", (recording_id,)).rowcount > 0

    def recordings(
        self, conference_id: str | None = None, *, unfinished: bool = False
    ) -> list[RecordingEntry]:
        """Recordings, newest first: all, or one conference's; only the unfinished ones."""
        query = f"SELECT {_RECORDING_COLUMNS} FROM recordings"
        where: list[str] = []
        args: list[object] = []
        if conference_id is not None:
            where.append("conference_id = ?")
            args.append(conference_id)
        if unfinished:
            where.append("ended_at IS NULL")
        if where:
            query += " WHERE " + " AND ".join(where)
        with self._tx("DEFERRED") as conn:
            rows = conn.execute(query + " ORDER BY started_at DESC, id DESC", args).fetchall()
        return [RecordingEntry(*row) for row in rows]

    def recording(self, recording_id: int) -> RecordingEntry | None:
        """One recording, or ``None``."""
        with self._tx("DEFERRED") as conn:
            row = conn.execute(
                f"SELECT {_RECORDING_COLUMNS} FROM recordings WHERE id = ?", (recording_id,)
            ).fetchone()
        return None if row is None else RecordingEntry(*row)


_RECORDING_COLUMNS: Final = (
    "id, conference_id, file, source, started_at, ended_at, duration_s, size"
)


def _iso(at: float, tz: tzinfo | None) -> str:
    moment = datetime.fromtimestamp(at, UTC).astimezone(tz)
    return moment.isoformat(timespec="seconds")
