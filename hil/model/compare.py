"""Prediction against measured counts: exact where the model is exact, within bounds where
it allows noise. A reason the model leaves out is predicted zero."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hil.model.types import ZERO, Bound, Prediction


@dataclass(frozen=True)
class Row:
    reason: str
    predicted: Bound
    measured: int

    @property
    def ok(self) -> bool:
        return self.predicted.contains(self.measured)


def compare(prediction: Prediction, measured: Mapping[str, int]) -> list[Row]:
    reasons = sorted(set(prediction.exits) | set(measured))
    return [Row(r, prediction.exits.get(r, ZERO), measured.get(r, 0)) for r in reasons]


def agrees(prediction: Prediction, measured: Mapping[str, int]) -> bool:
    return all(row.ok for row in compare(prediction, measured))
