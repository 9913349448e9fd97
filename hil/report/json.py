"""result.json: the whole RunResult, one versioned document per run (hil/report/result.schema.json
describes it; bump SCHEMA_VERSION when a field changes meaning or goes away)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hil.verdict import RunResult

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("result.schema.json")


class ResultFileError(ValueError):
    """A result.json that cannot be read: the message names the file."""


def existing_logs(logs: dict[str, str]) -> dict[str, str]:
    """Only the log paths that point to files: a result never names a file that is gone."""
    return {k: v for k, v in logs.items() if Path(v).is_file()}


def document(result: RunResult, **extra: Any) -> dict[str, Any]:
    doc = {"schema_version": SCHEMA_VERSION, **result.to_dict(), **extra}
    doc["logs"] = existing_logs(doc.get("logs") or {})
    return doc


def dumps(result: RunResult, **extra: Any) -> str:
    return json.dumps(document(result, **extra), indent=2, default=str)


def write_text(path: Path, text: str) -> None:
    """Written whole or not at all (a temporary file renamed over the target)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())       # on the disk before it replaces anything
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write(path: Path, result: RunResult, **extra: Any) -> None:
    write_text(path, dumps(result, **extra))


def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def load(path: Path) -> dict[str, Any]:
    """A result.json document. Files written before schema_version existed (the same shape)
    read as version 0; a newer version than this hil knows is refused."""
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise ResultFileError(f"{path}: cannot read: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ResultFileError(f"{path}: not JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list) or "scenario" not in doc:
        raise ResultFileError(f"{path}: not a hil result (no scenario and cases)")
    version = doc.setdefault("schema_version", 0)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ResultFileError(f"{path}: schema_version {version!r} is newer than this hil reads ({SCHEMA_VERSION})")
    return doc
