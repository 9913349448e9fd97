"""hil doctor reports every capability with a fix hint for each miss (runs on any box)."""
import json
import subprocess
import sys


def test_doctor_json_lists_capabilities_with_fixes():
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "doctor", "--json"], capture_output=True, text=True)
    checks = json.loads(proc.stdout)
    names = {c["name"] for c in checks}
    assert "qemu-system-x86_64" in names and "image cache writable" in names
    assert any(n.startswith("tool gcc") for n in names)
    for c in checks:
        assert set(c) >= {"name", "ok", "detail", "fix", "required"}
        if not c["ok"]:
            assert c["fix"], c
    required_ok = all(c["ok"] for c in checks if c["required"])
    assert proc.returncode == (0 if required_ok else 1)


def test_doctor_text_marks_misses():
    proc = subprocess.run([sys.executable, "-m", "hil.cli", "doctor"], capture_output=True, text=True)
    assert "[ok  ] tool gcc" in proc.stdout or "[MISS] tool gcc" in proc.stdout
