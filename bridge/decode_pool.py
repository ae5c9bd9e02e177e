"""Worker threads shared by many decoders: each decoder's work in order, all of it on a few
threads.

ARCHITECTURE.md, "The wall": every feed on the wall is decoded, off the event loop. A
:class:`DecodePool` runs the work of many decoders on ``workers`` threads instead of one
thread per feed; each decoder submits through a :class:`Strand` of its own, whose items are
handled one at a time, in order, by whichever worker is free, so a decoder's state needs no
lock. Strands take turns an item at a time: one feed with a backlog never holds up the
others for more than one item.

Under CPU contention one thread gets one scheduler share however many feeds it serves, so
the pool spills over: while ``spill_after`` or more strands wait for a worker, up to
``spill_workers`` more threads are woken to help (and go back to sleep once the queue is
empty). A quiet wall runs on ``workers`` threads; a starved one on more.

A handler that raises is logged and the worker goes on with the next item: one feed's
failure never stops the others.

Measured (``benchmarks/wall_bench.py``, ``bridge-30fps`` against case
``bridge-30fps-perfeed``, a thread per feed; quiet machine): the same CPU per decoded frame
within the noise (0.66 / 0.68 ms and 0.67 / 0.67 ms in two runs): the per-frame overhead is
not the thread count. What the pool gives is a bounded thread count for a large wall and
an event loop that 25 runnable decoding threads cannot crowd out.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["DecodePool", "Strand"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Strand(Generic[T]):
    """One decoder's items, handled in order, one at a time, by its pool's workers."""

    def __init__(self, pool: DecodePool, handler: Callable[[T], None], name: str) -> None:
        self.name = name
        self._pool = pool
        self._handler = handler
        self._items: collections.deque[T] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False  # in the pool's ready queue, or being handled
        self.closed = False

    def __repr__(self) -> str:
        return f"Strand({self.name!r})"

    @property
    def pending(self) -> int:
        """Items submitted and not yet handled."""
        return len(self._items)

    def put(self, item: T) -> None:
        """Submit ``item`` (any thread); ignored once closed."""
        with self._lock:
            if self.closed:
                return
            self._items.append(item)
            if self._scheduled:
                return
            self._scheduled = True
        self._pool._schedule(self)

    def clear(self) -> int:
        """Drop the items not yet handled; returns how many."""
        with self._lock:
            dropped = len(self._items)
            self._items.clear()
            return dropped

    def close(self) -> None:
        """Drop what is pending and take no more items (idempotent). An item being handled
        now runs to its end."""
        with self._lock:
            self.closed = True
            self._items.clear()

    def _run_one(self) -> None:
        """Handle the oldest item (in a worker), then queue up again behind the others."""
        with self._lock:
            if not self._items:
                self._scheduled = False
                return
            item = self._items.popleft()
        try:
            self._handler(item)
        except Exception:
            logger.exception("%r: handler failed", self)
        with self._lock:
            if not self._items:
                self._scheduled = False
                return
        self._pool._schedule(self)


class DecodePool:
    """``workers`` threads (and ``spill_workers`` more while ``spill_after`` strands wait)
    running the :class:`Strand` items of many decoders.

    Threads start with the first item; :meth:`close` ends them (idempotent). Strands of a
    closed pool take no more work.
    """

    def __init__(
        self,
        workers: int = 1,
        *,
        spill_workers: int = 2,
        spill_after: int = 3,
        name: str = "decode",
    ) -> None:
        if workers < 1 or spill_workers < 0 or spill_after < 1:
            raise ValueError("workers and spill_after must be positive, spill_workers >= 0")
        self.workers = workers
        self.spill_workers = spill_workers
        self.spill_after = spill_after
        self.name = name
        self.spills = 0  # times a spill worker was woken
        self._ready: queue.SimpleQueue[Strand[object] | None] = queue.SimpleQueue()
        self._wake: queue.SimpleQueue[bool | None] = queue.SimpleQueue()  # for spill workers
        self._idle_spill = 0
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.closed = False

    def __repr__(self) -> str:
        return (
            f"DecodePool({self.name!r}, workers={self.workers}, spill_workers={self.spill_workers})"
        )

    def strand(self, handler: Callable[[T], None], name: str) -> Strand[T]:
        """A new strand whose items go to ``handler`` (called in a worker thread)."""
        return Strand(self, handler, name)

    @property
    def thread_ids(self) -> tuple[int, ...]:
        """The workers' native thread ids (for per-thread CPU accounting)."""
        return tuple(t.native_id for t in self._threads if t.native_id is not None)

    def close(self) -> None:
        """End the workers once they finish what they are handling (idempotent)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            started = bool(self._threads)
        if started:
            for _ in range(self.workers):
                self._ready.put(None)
            for _ in range(self.spill_workers):
                self._wake.put(None)

    def _schedule(self, strand: Strand[T]) -> None:
        if self.closed:
            return
        if not self._threads:
            self._start()
        ready = self._ready
        ready.put(strand)  # type: ignore[arg-type]
        if self._idle_spill and ready.qsize() >= self.spill_after:
            with self._lock:
                if self._idle_spill <= 0:
                    return
                self._idle_spill -= 1
                self.spills += 1
            self._wake.put(True)

    def _start(self) -> None:
        with self._lock:
            if self.closed or self._threads:
                return
            for i in range(self.workers + self.spill_workers):
                target = self._work if i < self.workers else self._spill
                thread = threading.Thread(target=target, name=f"{self.name}-{i}", daemon=True)
                self._threads.append(thread)
            self._idle_spill = self.spill_workers
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        ready = self._ready
        while (strand := ready.get()) is not None:
            strand._run_one()

    def _spill(self) -> None:
        """A spill worker: woken while strands queue up, it helps until the queue is empty."""
        ready = self._ready
        while self._wake.get() is not None:
            while True:
                try:
                    strand = ready.get_nowait()
                except queue.Empty:
                    break
                if strand is None:  # a core worker's end: leave it to one
                    ready.put(None)
                    break
                strand._run_one()
            with self._lock:
                self._idle_spill += 1
