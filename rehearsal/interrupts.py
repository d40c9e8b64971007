"""Ctrl-C and SIGTERM stop a rehearsal the same way: the step running is killed, the
temporary folders are removed, and the exit status says which signal it was.

Python turns SIGINT into ``KeyboardInterrupt``; :func:`sigterm_interrupts` makes SIGTERM
(``kill PID``, a CI job's timeout, a terminal closing) raise :class:`Terminated`, a
``KeyboardInterrupt``, so every ``except KeyboardInterrupt`` and ``except BaseException``
cleanup of the rehearsal covers both.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would raise KeyboardInterrupt; its text says so."""

    exit_status = 128 + signal.SIGTERM

    def __init__(self) -> None:
        super().__init__("terminated (SIGTERM)")


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The shell's status for a process stopped by this signal: 143 for SIGTERM, 130 else."""
    return getattr(interrupt, "exit_status", 128 + signal.SIGINT)


def verb(interrupt: KeyboardInterrupt) -> str:
    return str(interrupt) or "interrupted"


@contextlib.contextmanager
def ignored() -> Iterator[None]:
    """Within the block (on the main thread), Ctrl-C and SIGTERM are ignored."""
    previous = {signum: signal.signal(signum, signal.SIG_IGN)
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block (on the main thread), SIGTERM raises :class:`Terminated`."""
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred() -> Iterator[list[KeyboardInterrupt]]:
    """Holds back Ctrl-C and SIGTERM (where they raise) while a step's process starts: an
    interrupt inside Popen, after the fork, would leave a child that nobody kills (it has its
    own session, so the signal does not reach it) writing into folders being removed. The
    list receives what was held back; the caller raises it once it can kill the child."""
    held: list[KeyboardInterrupt] = []
    if threading.current_thread() is not threading.main_thread():  # it gets no signals
        yield held
        return
    raising = {signal.SIGINT: (signal.default_int_handler, KeyboardInterrupt),
               signal.SIGTERM: (_raise_terminated, Terminated)}
    previous = {}
    for signum, (handler, interrupt) in raising.items():
        if signal.getsignal(signum) is handler:
            previous[signum] = signal.signal(
                signum, lambda *_, interrupt=interrupt: held.append(interrupt()))
    try:
        yield held
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
