"""What one estimate weighs and keeps, apart from the estimator that fills it: the final candidates (kept in step
while twins join and appearance rescores), the hypothesis pool kept for diagnosis, and the stage timer."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from one2any_ros.core.verify import VerifyResult


class StageTimer:
    """Stage laps; a backend's own sub-timings (network, ransac, grid: parts of "hypotheses") are added to
    ``ms`` too, so the total is the wall time since the start, never a sum of ``ms``."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._t = self._t0 = time.perf_counter()

    def total_ms(self) -> float:
        return 1000.0 * (time.perf_counter() - self._t0)

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.ms[name] = self.ms.get(name, 0.0) + 1000.0 * (now - self._t)
        self._t = now


@dataclass
class HypothesisPool:
    """What one global search weighed (kept only when ``PoseEstimator.record_pool`` is set): for diagnosis,
    e.g. whether a miss had the right pose in its pool (search fine, verifier wrong) or never found it."""

    T_camera_C: np.ndarray  # (B,4,4) every hypothesis the verifier scored
    sources: list[str]  # (B,) where each came from
    score: np.ndarray  # (B,) its verifier score
    refined_T_camera_C: np.ndarray  # (K,4,4) the best K after guarded refinement (the final candidates)
    refined_score: np.ndarray  # (K,) their verifier scores
    chosen: int  # index into the refined candidates
    refined_term: np.ndarray | None = None  # (K,) the backend's learned term added for the final choice, if any
    refined_sources: list[str] | None = None  # (K,) where each final candidate came from (with twins: "twin")
    refined_appearance: np.ndarray | None = None  # (K,) appearance score (appearance_weight > 0 only)
    refined_confidence: np.ndarray | None = None  # (K,) their verifier confidence (before any margin factor)


@dataclass
class Candidates:
    """The refined candidates of one global search, kept in step: twins append to all fields, appearance rescores."""

    T: np.ndarray  # (k,4,4) T_query_C
    score: np.ndarray  # what decides: the verifier's score + the backend's term (+ appearance)
    verifier_score: np.ndarray  # the verifier's alone
    conf: np.ndarray
    agree: np.ndarray
    violation: np.ndarray
    sources: list[str]
    term: np.ndarray | None  # the backend's candidate term (None: it has none)

    def result(self) -> VerifyResult:
        """What decided, as the VerifyResult ``_finish`` reads (score, confidence, agreement, violation)."""
        return VerifyResult(score=self.score, confidence=self.conf, agree=self.agree, violation=self.violation)
