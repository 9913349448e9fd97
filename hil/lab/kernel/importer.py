"""hil kernel import: a user's copy of a series (an mbox or a folder of .patch files),
checked against the manifest by subject and order, then stored in the cache."""
from __future__ import annotations

import hashlib
import mailbox
import re
from dataclasses import dataclass
from pathlib import Path

from hil.lab.assets.cache import cache_root
from hil.lab.errors import LabError
from hil.lab.kernel.manifest import Series

_TAG = re.compile(r"^\s*\[[^\]]*\]\s*")


def normalise_subject(subject: str) -> str:
    """'[RFC v2 PATCH 14/21] KVM: Directly  handle…' -> 'kvm: directly handle…'."""
    s = " ".join(subject.split())
    while _TAG.match(s):
        s = _TAG.sub("", s, count=1)
    return s.strip().casefold()


@dataclass(frozen=True)
class FoundPatch:
    subject: str
    text: str
    origin: str


def _is_patch(text: str) -> bool:
    return "\n+++ " in text and "\n--- " in text


def read_mbox(path: Path) -> list[FoundPatch]:
    out = []
    for i, msg in enumerate(mailbox.mbox(str(path))):
        body = msg.get_payload(decode=True)
        text = body.decode(errors="replace") if isinstance(body, bytes) else str(msg.get_payload())
        if _is_patch(text):   # skips cover letters and replies
            out.append(FoundPatch(str(msg.get("Subject", "")), text, f"{path.name} message {i + 1}"))
    return out


def read_dir(path: Path) -> list[FoundPatch]:
    out = []
    for f in sorted(path.glob("*.patch")):
        text = f.read_text(errors="replace")
        m = re.search(r"^Subject:\s*(.*(?:\n[ \t].*)*)", text, re.M)
        subject = m.group(1) if m else text.splitlines()[0] if text else f.stem
        if _is_patch(text):
            out.append(FoundPatch(subject, text, f.name))
    return out


def check_against(series: Series, found: list[FoundPatch]) -> list[str]:
    """Every way the copy differs from the manifest, in words; empty when it matches."""
    expected = [normalise_subject(p.subject) for p in series.patches]
    got = [normalise_subject(f.subject) for f in found]
    problems = []
    for i, s in enumerate(expected):
        if s not in got:
            problems.append(f"missing patch {i + 1}/{len(expected)}: {series.patches[i].subject!r}")
    for f, s in zip(found, got):
        if s not in expected:
            problems.append(f"unknown patch {f.subject!r} ({f.origin})")
    present = [s for s in got if s in expected]
    order = [s for s in expected if s in got]
    if not problems and present != order:
        for pos, s in enumerate(present):
            want = expected.index(s)
            if order[pos] != s:
                problems.append(f"out of order: {found[got.index(s)].subject!r} found at position {pos + 1}, "
                                f"the manifest has it at {want + 1}")
                break
    return problems


def import_series(series: Series, source: Path) -> Path:
    if source.is_dir():
        found = read_dir(source)
    elif source.is_file():
        found = read_mbox(source)
    else:
        raise LabError(f"{source}: no such mbox or directory")
    if not found:
        raise LabError(f"{source}: no patches found")
    problems = check_against(series, found)
    if problems:
        raise LabError(f"{source} does not match kernel_patches/{series.name}/series.yaml:\n  " + "\n  ".join(problems))
    by_subject = {normalise_subject(f.subject): f for f in found}
    digest = hashlib.sha256("".join(by_subject[normalise_subject(p.subject)].text
                                    for p in series.patches).encode()).hexdigest()[:24]
    dest = cache_root() / "series" / series.name / digest
    dest.mkdir(parents=True, exist_ok=True)
    for p in series.patches:
        (dest / p.file).write_text(by_subject[normalise_subject(p.subject)].text)
    (dest / "source").write_text(str(source.resolve()) + "\n")
    return dest


def imported_dir(series: Series) -> Path | None:
    """The newest imported copy of a series whose patches hil does not ship."""
    copies = sorted((cache_root() / "series" / series.name).glob("*/source"), key=lambda p: p.stat().st_mtime)
    return copies[-1].parent if copies else None
