"""What every `hil run` imports before it knows what it needs: not the kernel build
machinery (~20 ms: build.py hashes its own code) nor qemu.qmp and asyncio (~20 ms), which
load when a series is built or a QEMU is attached."""
import subprocess
import sys

HEAVY = ("hil.lab.kernel.build", "qemu.qmp", "asyncio", "pyroute2", "ptrace")


def test_hil_run_start_up_imports_none_of_the_heavy_modules():
    code = ("import sys, hil.cli, hil.runner, hil.batch, hil.report.html, hil.report.junit; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == []
