"""A stop signal that lands where Python drops exceptions (an at-fork hook) is delivered
again, so hil still stops (a real signal, a real fork)."""
import os
import subprocess
import sys
import textwrap


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


def test_a_signal_qemu_qmp_swallows_still_stops_the_run(tmp_path):
    """qemu.qmp turns a KeyboardInterrupt raised inside its event loop into a disconnect: the
    QMP command then fails, and that failure is the stop signal again, not a LabError a caller
    may take for a shortcut that failed (the kill campaign's SIGTERM during a parked save)."""
    code = textwrap.dedent("""
        import os, signal, subprocess, time
        from hil.lab import signals
        from hil.lab.errors import LabError
        from hil.lab.qemu.machine import Machine
        signals.install()
        class SwallowingQmp:
            def cmd(self, name, **args):
                try:
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.2)
                except KeyboardInterrupt:
                    pass                   # what qemu.qmp's writer task does with it
                raise RuntimeError("QMPClient is disconnecting")
        m = Machine.__new__(Machine)
        m.name, m.qmp, m.proc = "l1", SwallowingQmp(), subprocess.Popen(["sleep", "30"])
        try:
            m.command("cont")
            print("not stopped")
        except LabError as e:
            print("lab error:", e)
        except KeyboardInterrupt as e:
            print("stopped:", e)
        finally:
            m.proc.kill()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert "stopped: signal SIGTERM" in proc.stdout, proc.stdout + proc.stderr
