"""The reference model: for every event a test can trigger, which VM exits happen, where they
are handled, which KVM counters move and what the guest sees, per kernel profile.
Pure: no I/O, no other hil layer."""
from hil.model.compare import Row, agrees, compare
from hil.model.errors import ModelError
from hil.model.events import EVENTS, EventSpec
from hil.model.predict import predict, predict_event
from hil.model.profiles import PROFILES, Profile
from hil.model.reasons import exit_reasons, extend, reason_name
from hil.model.types import Bound, Operation, Prediction

__all__ = ["Bound", "EVENTS", "EventSpec", "ModelError", "Operation", "PROFILES", "Prediction", "Profile", "Row",
           "agrees", "compare", "exit_reasons", "extend", "predict", "predict_event", "reason_name"]
