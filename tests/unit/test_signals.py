"""A stop signal that lands where Python drops exceptions (an at-fork hook), or where its
exception would break things (an import, an event loop), is delivered again, so hil still
stops, and stops cleanly (real signals, a real fork, a real asyncio loop)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path


def test_a_signal_raised_in_an_at_fork_hook_is_not_lost(tmp_path):
    code = textwrap.dedent("""
        import os, signal, subprocess, time
        from hil.lab import signals
        signals.install()
        def hook():                 # stands for logging's at-fork lock release
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)         # the handler runs here: its exception is dropped
        os.register_at_fork(after_in_parent=hook)
        try:
            subprocess.run(["true"], preexec_fn=lambda: None)
            time.sleep(5)
            print("not stopped")
        except KeyboardInterrupt as e:
            print("stopped:", e)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert "stopped: signal SIGTERM" in proc.stdout, proc.stdout + proc.stderr
    assert "delivering it again" in proc.stderr


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=f"{os.getcwd()}:{tmp_path}"))


def test_a_signal_in_an_import_is_delivered_once_the_import_is_over(tmp_path):
    """Raised inside the import, it would leave the module half-made for good, and the
    dataclass made there by exec() would make CPython exit by SIGINT instead of 2."""
    (tmp_path / "slow_module.py").write_text(textwrap.dedent("""
        import dataclasses, os, signal, time
        os.kill(os.getpid(), signal.SIGTERM)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.3:      # the handler runs here, inside the import
            @dataclasses.dataclass
            class Made:
                x: int = 0
        DONE = True
    """))
    proc = _run("""
        import sys, time
        from hil.lab import signals
        signals.install()
        try:
            import slow_module
            time.sleep(5)
            print("not stopped")
        except KeyboardInterrupt as e:
            print("stopped:", e)
        print("imported whole:", getattr(sys.modules.get("slow_module"), "DONE", False))
        sys.exit(2)
    """, tmp_path)
    assert "stopped: signal SIGTERM\nimported whole: True" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 2, proc.stderr


def test_a_signal_in_qemu_qmps_event_loop_is_delivered_once_the_loop_returns(tmp_path):
    """Raised inside asyncio's loop, qemu.qmp would be left half-way between its states (an
    AssertionError on the next disconnect) and raise it again from a later call."""
    proc = _run("""
        import asyncio, os, signal, time
        from hil.lab import signals
        signals.install()
        async def command():
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.3)           # the handler runs here, in the loop
            return "answered"
        loop = asyncio.new_event_loop()
        try:
            print(loop.run_until_complete(command()))
            time.sleep(5)
            print("not stopped")
        except KeyboardInterrupt as e:
            print("stopped:", e)
    """, tmp_path)
    assert "answered\nstopped: signal SIGTERM" in proc.stdout, proc.stdout + proc.stderr


def test_the_watchdogs_alarm_in_an_import_times_the_run_out_once_the_import_is_over(tmp_path):
    (tmp_path / "alarmed.py").write_text(textwrap.dedent("""
        import os, signal, time
        os.kill(os.getpid(), signal.SIGALRM)
        time.sleep(0.3)
        DONE = True
    """))
    proc = _run("""
        import sys, time
        from hil.lab import signals
        from hil.runner import RunTimeout, watchdog
        signals.install()
        try:
            with watchdog(60, "the run"):
                import alarmed
                time.sleep(5)
        except RunTimeout as e:
            print("timed out:", e)
        print("imported whole:", getattr(sys.modules.get("alarmed"), "DONE", False))
    """, tmp_path)
    assert "timed out: the run did not finish within its 60 s timeout (topology timeout)\nimported whole: True" \
        in proc.stdout, proc.stdout + proc.stderr


def test_no_signal_is_delivered_again_once_its_handler_is_gone(tmp_path):
    """The watchdog's SIGALRM, deferred, then the watchdog ends: SIGALRM's default would kill."""
    proc = _run("""
        import signal, time
        from hil.lab import signals
        signals._resend(signal.SIGALRM, lambda signum, frame: None)   # the watchdog's handler, gone
        time.sleep(0.2)
        print("alive")
    """, tmp_path)
    assert proc.stdout == "alive\n", proc.stdout + proc.stderr


def test_a_teardown_stuck_after_a_stop_signal_ends_with_exit_2_and_every_stack(tmp_path):
    proc = _run("""
        import threading
        from hil.lab import signals
        signals.STOP_DEADLINE_S = 0.5
        signals.stopping()
        def wedged_monitor_close():
            lock = threading.Lock()
            lock.acquire()
            lock.acquire()
        wedged_monitor_close()
    """, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "hil: still tearing down 0.5 s after the stop signal" in proc.stderr
    assert 'in wedged_monitor_close' in proc.stderr
