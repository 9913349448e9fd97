"""result.json: the whole RunResult, one document per run."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hil.verdict import RunResult


def document(result: RunResult, **extra: Any) -> dict[str, Any]:
    return {**result.to_dict(), **extra}


def write(path: Path, result: RunResult, **extra: Any) -> None:
    """Written whole or not at all (a temporary file, fsynced, renamed over the target)."""
    text = json.dumps(document(result, **extra), indent=2, default=str)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())       # on the disk before it replaces anything
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def dumps(result: RunResult, **extra: Any) -> str:
    return json.dumps(document(result, **extra), indent=2, default=str)
