"""Group commit: concurrent requests of one process written together, in one transaction.

A `Gatherer` collects what concurrent callers hand it for at most `max_wait`
seconds (or until `max_size` are waiting), then runs them as one batch, on one
connection, in one transaction. While `max_in_flight` batches are running, new
arrivals wait for one of them to finish, so a busy process makes bigger batches
rather than more of them. Each caller gets its own answer (or exception) once the
batch has committed: an answer always means the caller's row is durable.

The batch function returns one outcome per item, in order: a value, or an
exception to raise in that caller alone. An exception escaping the batch function
fails every caller of the batch (a lost connection: each gets the database-
unavailable error, which the app answers with 503).
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

MAX_WAIT = 0.0015  # seconds the first caller of a batch waits for company
MAX_SIZE = 64
MAX_IN_FLIGHT = 2

Batch = Callable[[Sequence[Any]], Awaitable[Sequence[Any]]]


class Gatherer:
    def __init__(
        self,
        run: Batch,
        max_wait: float = MAX_WAIT,
        max_size: int = MAX_SIZE,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._run = run
        self.max_wait = max_wait
        self.max_size = max_size
        self.max_in_flight = max_in_flight
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_batches = 0

    @property
    def waiting(self) -> int:
        """Callers waiting for an answer: in a running batch or not yet in one."""
        return len(self._pending) + self._in_batches

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        self._loop = loop
        future = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_size:
            self._dispatch()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait, self._on_timer)
        return await future

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _dispatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending or len(self._running) >= self.max_in_flight:
            return  # a finishing batch dispatches what waits
        batch, self._pending = self._pending[: self.max_size], self._pending[self.max_size :]
        # A context of its own: nothing of the request that happened to start it
        # (its language, its `databases` connection) leaks into the batch.
        task = self._loop.create_task(self._run_batch(batch), context=contextvars.Context())
        self._running.add(task)
        if self._pending and len(self._running) < self.max_in_flight:
            self._timer = self._loop.call_later(self.max_wait, self._on_timer)

    async def _run_batch(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        self._in_batches += len(batch)
        try:
            outcomes = await self._run([item for item, _ in batch])
        except BaseException as error:  # noqa: BLE001 (every caller hears of it)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(error, Exception):
                raise
        else:
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue  # the caller went away; its row is stored all the same
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
        finally:
            self._in_batches -= len(batch)
            self._running.discard(asyncio.current_task())
            self._dispatch()


_gatherers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gatherer(owner: object, name: str, run: Batch) -> Gatherer:
    """The process's gatherer `name` for `owner` (a Database) on the running loop."""
    loop = asyncio.get_running_loop()
    mine = _gatherers.setdefault(owner, {})
    found = mine.get(name)
    if found is None or (found._loop is not None and found._loop is not loop):
        found = mine[name] = Gatherer(run)
    return found
