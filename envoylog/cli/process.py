"""What a short command does to finish sooner as a process: no garbage collection while it runs, none over
the whole heap at exit, and the database's work done while it imports.

A report loads pandas and SQLAlchemy (about a million objects), allocates a bounded amount, prints and ends.
CPython's collector would walk those objects again and again while the modules load, and once more when
the interpreter exits: a third of such a process's time, which buys nothing when the process is about to
give all its memory back.
"""

from __future__ import annotations

import atexit
import functools
import gc
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def without_collections() -> Iterator[None]:
    """Run the block with the cyclic garbage collector off, and freeze the heap when the process exits.

    Objects freed by reference counting go as always; only cycles wait, for the block's length. The
    collector's state is restored afterwards, so a command run in-process (tests) leaves it as it was.
    """
    _freeze_at_exit()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@functools.cache
def _freeze_at_exit() -> None:
    # atexit runs before the interpreter's final collections, which then skip the frozen objects.
    atexit.register(gc.freeze)


def in_background(work: Callable[[], T]) -> Future[T]:
    """Start `work` in a thread; its result, or its exception, comes from the returned future's result().

    While the database works (a server, or SQLite's C code, which releases the GIL), the caller's thread
    imports what it needs next. The thread is a daemon: Ctrl-C while waiting does not wait for the query.
    """
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # raised again in the caller's thread by result()
            future.set_exception(exc)

    threading.Thread(target=run, name="envoylog-background", daemon=True).start()
    return future
