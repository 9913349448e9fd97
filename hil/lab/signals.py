"""Signals that stop hil by raising an exception in the main thread (SIGTERM, SIGHUP and
SIGINT as KeyboardInterrupt; the watchdog's SIGALRM as RunTimeout), made reliable.

Python drops an exception raised where it cannot propagate (an at-fork hook such as
logging's, run while subprocess forks QEMU; a __del__) and only prints "Exception ignored".
A stop signal landing there would be lost and the run go on. Every such exception passes
through sys.unraisablehook: the hook installed here delivers the signal again a moment
later, when the main thread is back in ordinary code."""
from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, NoReturn

_raised: dict[type[BaseException], int] = {}      # exception type -> the signal that last raised it


def raise_for(signum: int, exc: BaseException) -> NoReturn:
    """Raise exc from a signal handler, redelivered if Python drops it."""
    _raised[type(exc)] = signum
    raise exc


def _terminate(signum: int, frame: object) -> None:
    # every context manager then tears its QEMU down, as for Ctrl-C
    if _stopping:
        print(f"hil: {signal.Signals(signum).name}: already stopping", file=sys.stderr)
        return
    raise_for(signum, KeyboardInterrupt(f"signal {signal.Signals(signum).name}"))


_stopping = False


def stopping() -> None:
    """hil has acted on a stop signal (it is tearing down, writing its ERROR): further stop
    signals are noted, not raised, and nothing is delivered again; a teardown interrupted
    half-way would leave what it was about to remove."""
    global _stopping
    _stopping = True
    _raised.pop(KeyboardInterrupt, None)


def pending() -> KeyboardInterrupt | None:
    """A stop signal raised but not yet acted on: qemu.qmp turns one raised inside its event
    loop into a disconnect, and the QMP command that failed of it is all the caller sees.
    That caller raises this instead, so the signal still stops the run."""
    signum = _raised.get(KeyboardInterrupt)
    if signum is None or _stopping:
        return None
    return KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def _resend(signum: int) -> None:
    handler = signal.getsignal(signum)
    if handler not in (signal.SIG_DFL, signal.SIG_IGN, None) and signum in _raised.values():   # still wanted
        os.kill(os.getpid(), signum)


def _redeliver(unraisable: Any) -> None:
    signum = _raised.get(type(unraisable.exc_value))
    if signum is None:
        sys.__unraisablehook__(unraisable)
        return
    print(f"hil: signal {signal.Signals(signum).name} arrived where Python drops exceptions: "
          "delivering it again", file=sys.stderr)
    threading.Timer(0.01, _resend, (signum,)).start()


def install(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)) -> None:
    """Stop signals raise KeyboardInterrupt in the main thread, never lost."""
    sys.unraisablehook = _redeliver
    for signum in signums:
        signal.signal(signum, _terminate)
