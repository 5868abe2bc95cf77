"""Bounded stages in threads, one pattern for all of them: a producer that runs ahead of its consumer
(`run_ahead`) and a consumer that works behind its producer (`Behind`). Queues are bounded, so memory is;
the first error of a stage is re-raised in the caller; an error or Ctrl-C on either side stops the other.
"""
from __future__ import annotations

import atexit
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from faceswap.atomic import Committing

_DONE = object()
_live: set = set()  # (stop event, queue, thread) of every stage still running


@atexit.register
def _stop_all() -> None:
    """Stop and join the stage threads a failing or interrupted caller left behind, before the interpreter
    shuts down: a daemon thread still inside native code then (a decoder, a detector) aborts the process."""
    for stop, items, thread in list(_live):
        stop.set()
        _drain(items, thread, timeout=10)


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def _drain(items: queue.Queue, thread: threading.Thread, timeout: float | None = None) -> None:
    """Empty `items` until `thread` ends (it may be blocked putting into, or waiting on, the queue)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while thread.is_alive() and (deadline is None or time.monotonic() < deadline):
        try:
            items.get_nowait()
        except queue.Empty:
            thread.join(0.05)


def run_ahead(iterable: Iterable, size: int = 16) -> Iterator:
    """Iterate `iterable` in a thread, up to `size` items ahead; yield its items in order, re-raise its error.
    Leaving the loop early (an error, Ctrl-C, a break) stops the thread."""
    items: queue.Queue = queue.Queue(maxsize=max(1, size))
    stop = threading.Event()

    def work():
        try:
            for item in iterable:
                if stop.is_set():
                    return
                items.put(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            items.put(_Failed(exc))
        items.put(_DONE)

    thread = threading.Thread(target=work, daemon=True)
    entry = (stop, items, thread)
    _live.add(entry)
    thread.start()
    try:
        while (item := items.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        _drain(items, thread)
        _live.discard(entry)


class Behind(Committing):
    """Call `work(item)` in a thread for each item `put`, in order, at most `size` items behind. `put` and
    `close` re-raise the first error of `work`; `abort` stops it without waiting for the rest."""

    def __init__(self, work: Callable, size: int = 32):
        self.items: queue.Queue = queue.Queue(maxsize=max(1, size))
        self.error: BaseException | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self.thread.start()

    def _run(self, work: Callable) -> None:
        while (item := self.items.get()) is not _DONE:
            if self.error is not None or self.stopped.is_set():
                continue  # keep taking items so the producer never blocks on a dead stage
            try:
                work(item)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the producer
                self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, item) -> None:
        self._raise()
        self.items.put(item)

    def close(self) -> None:
        """Wait for every item to be done; re-raise the first error."""
        self.items.put(_DONE)
        self.thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop: the items still queued are skipped (the thread only finishes the one it is on)."""
        self.stopped.set()
        self.items.put(_DONE)
        self.thread.join()
