"""The SQLite store: presets, attendance, CSV export, token overrides, restarts, two writers."""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from signalling.model import SiteId
from web.store import (
    DB_FILENAME,
    SCHEMA_VERSION,
    Attendance,
    ConferenceExistsError,
    Presence,
    RecordingEntry,
    RollcallRecord,
    Store,
    StoreError,
    UnknownConferenceError,
)
from web.tokens import hash_token, verify

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 7, 1, 9, 0, 0, tzinfo=CST).timestamp()
LAYOUT = {"output": "wall", "kind": "4", "tiles": [{"source": "tianhe.zhuji"}, {"source": None}]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.in_data_dir(tmp_path / "data") as s:
        yield s


def test_creates_folders_and_schema(tmp_path: Path) -> None:
    data = tmp_path / "a" / "b"
    Store.in_data_dir(data).close()
    db = sqlite3.connect(data / DB_FILENAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_presets(store: Store) -> None:
    assert store.presets() == {}
    store.save_preset("晨会", LAYOUT)
    store.save_preset("防汛 4 分屏", {"kind": "1", "tiles": [{"source": None}]})
    assert store.presets() == {
        "晨会": LAYOUT,
        "防汛 4 分屏": {"kind": "1", "tiles": [{"source": None}]},
    }
    assert store.preset("晨会") == LAYOUT
    store.save_preset("晨会", {"kind": "9", "tiles": []})  # replace
    assert store.preset("晨会") == {"kind": "9", "tiles": []}
    assert store.delete_preset("晨会") is True
    assert store.delete_preset("晨会") is False
    assert store.preset("晨会") is None
    assert list(store.presets()) == ["防汛 4 分屏"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_bad_preset_name(store: Store, name: str) -> None:
    with pytest.raises(ValueError):
        store.save_preset(name, LAYOUT)
    assert store.presets() == {}


def test_unserialisable_preset(store: Store) -> None:
    with pytest.raises(ValueError):
        store.save_preset("nan", {"x": float("nan")})
    with pytest.raises(TypeError):
        store.save_preset("obj", {"x": object()})
    assert store.presets() == {}


def test_conferences(store: Store) -> None:
    store.start_conference("c2", "第二次", T0 + 100)
    store.start_conference("c1", "防汛会商", T0)
    with pytest.raises(ConferenceExistsError):
        store.start_conference("c1", "again", T0)
    assert [c.id for c in store.conferences()] == ["c1", "c2"]
    store.end_conference("c1", T0 + 3600)
    store.end_conference("c1", T0 + 9999)  # no change
    c1 = store.conference("c1")
    assert (c1.title, c1.started_at, c1.ended_at) == ("防汛会商", T0, T0 + 3600)
    assert store.conference("c2").ended_at is None


def test_unknown_conference(store: Store) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.end_conference("nope", T0),
        lambda: store.record_join("nope", "tianhe.zhuji", T0),
        lambda: store.record_leave("nope", "tianhe.zhuji", T0),
        lambda: store.record_rollcall("nope", 1, "tianhe.zhuji", "acked", T0),
        lambda: store.attendance("nope"),
        lambda: store.attendance_csv("nope", {}),
        lambda: store.conference("nope"),
    ]
    for call in calls:
        with pytest.raises(UnknownConferenceError) as info:
            call()
        assert isinstance(info.value, LookupError)
        assert "nope" in str(info.value)


def test_attendance(store: Store) -> None:
    store.start_conference("c1", "防汛会商", T0)
    assert store.record_join("c1", "tianhe.zhuji", T0 + 1)
    assert not store.record_join("c1", "tianhe.zhuji", T0 + 2)  # replaced session: continues
    assert store.record_leave("c1", "tianhe.zhuji", T0 + 60)
    assert not store.record_leave("c1", "tianhe.zhuji", T0 + 61)  # not in
    assert store.record_join("c1", "tianhe.zhuji", T0 + 90)
    assert store.record_join("c1", "tianhe.liede", T0 + 5)
    store.record_rollcall("c1", 1, "tianhe.zhuji", "acked", T0 + 100)
    store.record_rollcall("c1", 1, "tianhe.shahe", "missed", T0 + 130)
    store.record_rollcall("c1", 2, "tianhe.zhuji", "missed", T0 + 200)
    store.end_conference("c1", T0 + 300)
    assert store.attendance("c1") == [
        Attendance(SiteId("tianhe.liede"), (Presence(T0 + 5, T0 + 300),), ()),
        Attendance(SiteId("tianhe.shahe"), (), (RollcallRecord(1, "missed", T0 + 130),)),
        Attendance(
            SiteId("tianhe.zhuji"),
            (Presence(T0 + 1, T0 + 60), Presence(T0 + 90, T0 + 300)),
            (RollcallRecord(1, "acked", T0 + 100), RollcallRecord(2, "missed", T0 + 200)),
        ),
    ]


def test_bad_rollcall_inputs(store: Store) -> None:
    store.start_conference("c1", "t", T0)
    with pytest.raises(ValueError):
        store.record_rollcall("c1", 1, "tianhe.zhuji", "present", T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.record_rollcall("c1", 0, "tianhe.zhuji", "acked", T0)
    with pytest.raises(ValueError):
        store.record_rollcall("c1", True, "tianhe.zhuji", "acked", T0)
    assert store.attendance("c1") == []


def test_attendance_csv(store: Store) -> None:
    store.start_conference("c1", "防汛会商", T0)
    store.record_join("c1", "tianhe.zhuji", T0 + 1)
    store.record_leave("c1", "tianhe.zhuji", T0 + 61)
    store.record_join("c1", "tianhe.zhuji", T0 + 90)
    store.record_rollcall("c1", 1, "tianhe.zhuji", "acked", T0 + 100)
    store.record_rollcall("c1", 1, "tianhe.liede", "missed", T0 + 130)
    store.record_join("c1", "guest.x", T0 + 7)
    names = {"tianhe": "天河区应急指挥中心", "tianhe.zhuji": "珠吉街", "tianhe.liede": "猎德街"}
    text = store.attendance_csv("c1", names, tz=CST)
    assert text.startswith("\ufeff")
    assert text.encode("utf-8").startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows == [
        [
            "site_id",
            "site_name",
            "joined_at",
            "left_at",
            "rollcall_round",
            "rollcall_result",
            "rollcall_at",
        ],
        ["tianhe", "天河区应急指挥中心", "", "", "", "", ""],
        [
            "tianhe.zhuji",
            "珠吉街",
            "2026-07-01T09:00:01+08:00",
            "2026-07-01T09:01:01+08:00",
            "",
            "",
            "",
        ],
        ["tianhe.zhuji", "珠吉街", "2026-07-01T09:01:30+08:00", "", "", "", ""],
        ["tianhe.zhuji", "珠吉街", "", "", "1", "acked", "2026-07-01T09:01:40+08:00"],
        ["tianhe.liede", "猎德街", "", "", "1", "missed", "2026-07-01T09:02:10+08:00"],
        ["guest.x", "", "2026-07-01T09:00:07+08:00", "", "", "", ""],
    ]


def test_csv_local_time_has_offset(store: Store) -> None:
    store.start_conference("c1", "t", T0)
    store.record_join("c1", "a", T0)
    rows = list(csv.reader(io.StringIO(store.attendance_csv("c1", {}).removeprefix("\ufeff"))))
    joined = datetime.fromisoformat(rows[1][2])
    assert joined.tzinfo is not None
    assert joined.timestamp() == T0


def test_token_overrides(store: Store) -> None:
    assert store.token_hashes() == {}
    first = hash_token("first-token-aaaaaaaaaa")
    second = hash_token("second-token-bbbbbbbbb")
    store.set_token_hash("tianhe.zhuji", first, T0)
    store.set_token_hash("tianhe.zhuji", second, T0 + 1)
    hashes = store.token_hashes()
    assert list(hashes) == ["tianhe.zhuji"]
    assert verify("second-token-bbbbbbbbb", hashes["tianhe.zhuji"])
    assert not verify("first-token-aaaaaaaaaa", hashes["tianhe.zhuji"])
    with pytest.raises(ValueError):
        store.set_token_hash("tianhe.liede", "plaintext", T0)
    assert list(store.token_hashes()) == ["tianhe.zhuji"]


def test_survives_reopen(tmp_path: Path) -> None:
    with Store.in_data_dir(tmp_path) as store:
        store.save_preset("p", LAYOUT)
        store.start_conference("c1", "会商", T0)
        store.record_join("c1", "tianhe.zhuji", T0 + 1)
        store.record_rollcall("c1", 1, "tianhe.zhuji", "acked", T0 + 2)
        store.set_token_hash("tianhe", hash_token("tok-cccccccccccccccc"), T0)
    with Store.in_data_dir(tmp_path) as store:
        assert store.presets() == {"p": LAYOUT}
        assert store.conference("c1").title == "会商"
        (row,) = store.attendance("c1")
        assert row.presence == (Presence(T0 + 1, None),)
        assert row.rollcalls == (RollcallRecord(1, "acked", T0 + 2),)
        assert verify("tok-cccccccccccccccc", store.token_hashes()["tianhe"])
        store.record_leave("c1", "tianhe.zhuji", T0 + 5)
    with Store.in_data_dir(tmp_path) as store:
        assert store.attendance("c1")[0].presence == (Presence(T0 + 1, T0 + 5),)


def test_close_is_idempotent(tmp_path: Path) -> None:
    store = Store.in_data_dir(tmp_path)
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(StoreError):
        store.presets()


def test_two_stores_on_one_file(tmp_path: Path) -> None:
    with Store.in_data_dir(tmp_path) as a, Store.in_data_dir(tmp_path) as b:
        a.start_conference("c1", "t", T0)
        b.record_join("c1", "s1", T0 + 1)
        a.save_preset("from-a", LAYOUT)
        assert b.presets() == {"from-a": LAYOUT}
        assert [r.site_id for r in a.attendance("c1")] == ["s1"]

        errors: list[BaseException] = []

        def work(store: Store, prefix: str) -> None:
            try:
                for i in range(50):
                    store.record_join("c1", f"{prefix}{i}", T0 + i)
                    store.record_rollcall("c1", 1, f"{prefix}{i}", "acked", T0 + i)
                    store.save_preset(f"{prefix}-{i % 5}", {"i": i})
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=work, args=(a, "a")),
            threading.Thread(target=work, args=(b, "b")),
            threading.Thread(target=work, args=(a, "c")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        rows = b.attendance("c1")
        assert len(rows) == 151
        assert all(len(r.presence) == 1 for r in rows)
        assert all(len(r.rollcalls) == 1 for r in rows if r.site_id != "s1")
        assert len(a.presets()) == 16


def test_newer_schema_refused(tmp_path: Path) -> None:
    Store.in_data_dir(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_FILENAME)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store.in_data_dir(tmp_path)


def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / DB_FILENAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=DB_FILENAME):
        Store.in_data_dir(tmp_path)


def test_data_dir_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot open"):
        Store.in_data_dir(tmp_path / "file")


def test_explicit_file_path(tmp_path: Path) -> None:
    store = Store(tmp_path / "x" / "custom.db")
    assert not store.closed
    store.save_preset("p", LAYOUT)
    store.close()
    assert store.closed
    assert (tmp_path / "x" / "custom.db").is_file()
    with Store(tmp_path / "x" / "custom.db") as again:
        assert again.presets() == {"p": LAYOUT}


def test_recordings_index(store: Store) -> None:
    store.start_conference("c1", "会商", T0)
    store.start_conference("c2", "会商", T0 + 100)
    first = store.start_recording("c1", "c1-090000.webm", "wall", T0 + 1)
    assert first == RecordingEntry(first.id, "c1", "c1-090000.webm", "wall", T0 + 1, None, 0, 0)
    second = store.start_recording("c2", "c2-090140.webm", "programme", T0 + 101)
    assert store.recordings(unfinished=True) == [second, first]  # newest first
    assert store.finish_recording(first.id, T0 + 61, 59.5, 123_456) is True
    done = store.recording(first.id)
    assert done == RecordingEntry(
        first.id, "c1", "c1-090000.webm", "wall", T0 + 1, T0 + 61, 59.5, 123_456
    )
    assert store.recordings("c1") == [done]
    assert store.recordings(unfinished=True) == [second]
    assert [r.id for r in store.recordings()] == [second.id, first.id]
    assert store.recording(first.id + second.id + 1) is None
    assert store.finish_recording(999, T0, 0, 0) is False
    assert store.delete_recording(second.id) is True and store.delete_recording(second.id) is False
    assert store.recordings() == [done]


def test_recording_bad_inputs(store: Store) -> None:
    with pytest.raises(UnknownConferenceError):
        store.start_recording("nope", "x.webm", "wall", T0)
    store.start_conference("c1", "t", T0)
    for name in ("", "../x.webm", "a/b.webm", "a\\b.webm", ".."):
        with pytest.raises(ValueError):
            store.start_recording("c1", name, "wall", T0)
    store.start_recording("c1", "x.webm", "wall", T0)
    with pytest.raises(ValueError):
        store.start_recording("c1", "x.webm", "wall", T0 + 1)  # one file, one entry
    assert len(store.recordings()) == 1


def test_migrates_a_database_without_recordings(tmp_path: Path) -> None:
    """A file made by the version before the recordings index (schema 1) opens, keeps its
    data and gains the index."""
    path = tmp_path / DB_FILENAME
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE recordings")  # back to what schema 1 made
    db.execute("PRAGMA user_version = 1")
    assert not db.execute("SELECT 1 FROM sqlite_master WHERE name LIKE 'recordings%'").fetchall()
    db.execute("INSERT INTO conferences (id, title, started_at) VALUES ('old', '旧会商', 1.0)")
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.conference("old").title == "旧会商"
        assert store.recordings() == []
        entry = store.start_recording("old", "old.webm", "wall", 2.0)
        assert store.recordings("old") == [entry]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
    db.close()
