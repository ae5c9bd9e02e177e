"""bridge.decode_pool: many decoders' work, each in order, on a few shared threads."""

from __future__ import annotations

import threading

import pytest

from bridge.decode_pool import DecodePool

TIMEOUT = 10.0


def test_each_strand_runs_in_order_one_item_at_a_time() -> None:
    pool = DecodePool(2, spill_workers=2, spill_after=1)  # spill workers join in at once
    seen: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    busy: dict[str, int] = {name: 0 for name in seen}
    overlapped: list[str] = []
    done = threading.Event()
    lock = threading.Lock()

    def handler(name: str) -> object:
        def handle(item: int) -> None:
            with lock:
                busy[name] += 1
                if busy[name] > 1:
                    overlapped.append(name)
            seen[name].append(item)
            with lock:
                busy[name] -= 1
            if all(len(v) == 200 for v in seen.values()):
                done.set()

        return handle

    strands = [pool.strand(handler(name), name) for name in seen]  # type: ignore[arg-type]
    for i in range(200):
        for strand in strands:
            strand.put(i)
    assert done.wait(TIMEOUT)
    assert all(v == list(range(200)) for v in seen.values())
    assert overlapped == []
    assert len(pool.thread_ids) == 4
    pool.close()
    pool.close()  # idempotent


def test_a_failing_handler_never_stops_the_worker_or_the_other_strands() -> None:
    pool = DecodePool(1)
    good: list[int] = []
    done = threading.Event()

    def bad(item: int) -> None:
        raise RuntimeError(f"broken feed {item}")

    def ok(item: int) -> None:
        good.append(item)
        if item == 9:
            done.set()

    broken, fine = pool.strand(bad, "broken"), pool.strand(ok, "fine")
    for i in range(10):
        broken.put(i)
        fine.put(i)
    assert done.wait(TIMEOUT)
    assert good == list(range(10))
    pool.close()


def test_strands_take_turns_so_a_backlog_does_not_hold_up_others() -> None:
    pool = DecodePool(1)
    gate = threading.Event()
    order: list[str] = []
    done = threading.Event()
    blocker = pool.strand(lambda _item: gate.wait(TIMEOUT), "blocker")
    blocker.put(0)  # the only worker waits here while both strands fill up

    def record(name: str, last: bool) -> None:
        order.append(name)
        if last:
            done.set()

    backlog = pool.strand(lambda i: record("backlog", False), "backlog")
    other = pool.strand(lambda last: record("other", last), "other")
    for _ in range(5):
        backlog.put(0)
    other.put(True)
    assert backlog.pending == 5 and other.pending == 1
    gate.set()
    assert done.wait(TIMEOUT)
    assert order.index("other") <= 1  # served after at most one item of the backlog
    pool.close()


def test_spill_workers_help_while_strands_queue_up() -> None:
    pool = DecodePool(1, spill_workers=1, spill_after=2)
    gate = threading.Event()
    pool.strand(lambda _item: gate.wait(TIMEOUT), "blocker").put(0)  # the core worker waits
    handled: list[str] = []
    done = threading.Event()

    def handle(item: str) -> None:
        handled.append(item)
        if len(handled) == 2:
            done.set()

    a, b = pool.strand(handle, "a"), pool.strand(handle, "b")
    a.put("a")
    b.put("b")  # two strands waiting: a spill worker is woken and handles both
    assert done.wait(TIMEOUT)
    assert sorted(handled) == ["a", "b"]
    assert pool.spills >= 1
    gate.set()
    pool.close()


def test_clear_and_close_drop_what_is_pending() -> None:
    pool = DecodePool(1)
    gate = threading.Event()
    handled: list[int] = []
    blocker = pool.strand(lambda _item: gate.wait(TIMEOUT), "blocker")
    blocker.put(0)
    strand = pool.strand(handled.append, "s")
    for i in range(4):
        strand.put(i)
    assert strand.clear() == 4
    strand.put(7)
    strand.close()
    strand.put(8)  # ignored once closed
    assert strand.pending == 0
    after = pool.strand(handled.append, "after")
    done = threading.Event()
    last = pool.strand(lambda _item: done.set(), "last")
    after.put(9)
    last.put(0)
    gate.set()
    assert done.wait(TIMEOUT)
    assert handled == [9]
    pool.close()
    after.put(10)  # a closed pool takes no more work
    assert handled == [9]


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DecodePool(0)
    with pytest.raises(ValueError):
        DecodePool(1, spill_workers=-1)
