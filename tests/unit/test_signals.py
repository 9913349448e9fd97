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
