"""The model's one error: a name it does not know, with the names it does."""
from __future__ import annotations


class ModelError(ValueError):
    pass


def unknown(kind: str, name: object, valid: object) -> ModelError:
    return ModelError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(map(str, valid)))}")  # type: ignore[call-overload]
