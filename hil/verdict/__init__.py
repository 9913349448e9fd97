"""Prediction against measurement: PASS, FAIL (the kernel contradicts the model),
ERROR (the lab broke) or SKIP (a capability is missing), per case."""
from hil.verdict.judge import CaseResult, ReasonRow, RunResult, Verdict, error_result, judge, skip_result

__all__ = ["CaseResult", "ReasonRow", "RunResult", "Verdict", "error_result", "judge", "skip_result"]
