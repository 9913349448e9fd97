"""Signals that stop hil by raising an exception in the main thread (SIGTERM, SIGHUP and
SIGINT as KeyboardInterrupt; the watchdog's SIGALRM as RunTimeout), made reliable.

Python drops an exception raised where it cannot propagate (an at-fork hook such as
logging's, run while subprocess forks QEMU; a __del__) and only prints "Exception ignored".
A stop signal landing there would be lost and the run go on. Every such exception passes
through sys.unraisablehook: the hook installed here delivers the signal again a moment
later, when the main thread is back in ordinary code.

Two places must not see the exception at all, so a signal that lands in them is delivered
again 10 ms later, until it lands outside:
- an import: the module stays broken (its package keeps the submodules already loaded, but a
  second import does not bind them: "name 'base_events' is not defined" from asyncio,
  imported lazily with qemu.qmp), and a dataclass made there by exec() makes CPython exit by
  SIGINT whatever exit code hil returns;
- qemu.qmp's event loop (asyncio, run in the main thread by its legacy client): the exception
  leaves its state machine half-way (AssertionError on the next disconnect) and is raised
  again from a later QMP call, after hil has begun tearing down. QMP calls are short (each
  has a timeout, and a connect starts once QEMU's greeting is there)."""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

_raised: dict[type[BaseException], int] = {}      # exception type -> the signal that last raised it


def raise_for(signum: int, exc: BaseException, frame: FrameType | None) -> None:
    """Raise exc from a signal handler (frame: the handler's), redelivered if Python drops it;
    inside an import or an event loop, the signal is delivered again 10 ms later instead."""
    if _must_not_raise(frame):
        _deliver_again(signum)
        return
    _raised[type(exc)] = signum
    raise exc


def _must_not_raise(frame: FrameType | None) -> bool:
    while frame is not None:
        path = frame.f_code.co_filename
        if path.startswith("<frozen importlib") or "/asyncio/" in path or "/qemu/qmp/" in path:
            return True
        frame = frame.f_back
    return False


def _terminate(signum: int, frame: FrameType | None) -> None:
    # every context manager then tears its QEMU down, as for Ctrl-C
    if _stopping:
        print(f"hil: {signal.Signals(signum).name}: already stopping", file=sys.stderr)
        return
    raise_for(signum, KeyboardInterrupt(f"signal {signal.Signals(signum).name}"), frame)


_stopping = False


#: a teardown still going this long after the stop signal is stuck (a wedged monitor, a lock):
#: hil prints every thread's stack and exits 2 (its QEMUs die with it: PR_SET_PDEATHSIG)
STOP_DEADLINE_S = 60.0


def stopping() -> None:
    """hil has acted on a stop signal (it is tearing down, writing its ERROR): further stop
    signals are noted, not raised, and nothing is delivered again; a teardown interrupted
    half-way would leave what it was about to remove. It has STOP_DEADLINE_S to end."""
    global _stopping
    if not _stopping:
        _stopping = True
        threading.Thread(target=_give_up, args=(STOP_DEADLINE_S,), name="stop-deadline", daemon=True).start()


def _give_up(after: float) -> None:
    time.sleep(after)
    print(f"hil: still tearing down {after:g} s after the stop signal; every thread's stack follows; "
          "exiting 2", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(sys.stderr, all_threads=True)
    os._exit(2)


def _deliver_again(signum: int) -> None:
    threading.Timer(0.01, _resend, (signum, signal.getsignal(signum))).start()


def _resend(signum: int, handler: Any) -> None:
    # not once hil is stopping, nor when the handler is gone (SIGALRM's default would kill hil)
    if not _stopping and signal.getsignal(signum) is handler:
        os.kill(os.getpid(), signum)


def _redeliver(unraisable: Any) -> None:
    signum = _raised.get(type(unraisable.exc_value))
    if signum is None:
        sys.__unraisablehook__(unraisable)
        return
    print(f"hil: signal {signal.Signals(signum).name} arrived where Python drops exceptions: "
          "delivering it again", file=sys.stderr)
    _deliver_again(signum)


def install(signums: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)) -> None:
    """Stop signals raise KeyboardInterrupt in the main thread, never lost."""
    sys.unraisablehook = _redeliver
    for signum in signums:
        signal.signal(signum, _terminate)
