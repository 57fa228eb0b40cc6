"""The learned backend (the paper's method): ROPE-encoded reference, conditioned U-Net decoder -> dense ROC
+ confidence on the query -> RANSAC + weighted Umeyama hypotheses, pooled with the classic global search.

The reference is encoded once (``encode_reference`` fills ``ref.embedding`` with numpy arrays, saved with
the reference); per frame only the decoder runs. An embedding from another checkpoint (its id is stored
beside the arrays) is re-encoded once, never silently reused. After verification and refinement the backend's
hypothesis scorer (model/scorer.py) adds its learned term to the refined candidates (``candidate_term``).
"""
from __future__ import annotations

import os
import time

import numpy as np
import torch

from one2any_ros.core.errors import CheckpointError, One2AnyError
from one2any_ros.core.geometry import ransac_rigid_thresholds, subsample
from one2any_ros.core.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from one2any_ros.core.model.device import resolve_device
from one2any_ros.core.background import BackgroundCall, overlap_pays
from one2any_ros.core.model.inputs import CropWindow, output_at_pixels, query_input, reference_input, roll_query_input, unroll_output
from one2any_ros.core.model.network import EMBEDDING_KEYS, confidence_from_log_b
from one2any_ros.core.model.scorer import DEFAULT_SCORER, ScorerReference, comparison_images, load_scorer, scorer_query, scorer_reference
from one2any_ros.core.reference import Reference
from one2any_ros.core.frame import View
from one2any_ros.core.backends.base import Backend, Proposal, QueryContext, SearchSettings
from one2any_ros.core.backends.classic import ClassicBackend

RANSAC_POINTS = 600  # correspondences of the RANSAC (a random subset of the query points)
# With query rolls (test-time augmentation, model.inputs.roll_query_input) each roll gets its own, smaller RANSAC:
# measured on validation objects, 400 points x half the iterations found a right pose as often as 600 x all
# (60-120 deg: 41 vs 42 of 112 queries) at 2/3 of the cost.
ROLL_RANSAC_POINTS = 400
RANSAC_THRESHOLD_STEPS = (1.0, 2.0, 0.5, 1.5, 3.0, 0.75)  # x settings.ransac_threshold, one per hypothesis
# (all from one set of minimal samples: geometry.ransac_rigid_thresholds)
# The verifier's ROC term rewards hypotheses that agree with the predicted ROC. From an undertrained network
# (validation ROC error around the "copy the query geometry" level, ~0.4 radii: docs/architecture.md,
# Learning) that term only biases the choice towards small rotations, so by default the prediction is handed
# to the verifier only when the checkpoint's training summary shows a validation ROC error below this,
# measured on pairs spanning the whole 0-180 deg range (validation follows the training sampler's range: a
# curriculum run at 0-90 deg reports a low error that says nothing about the wide baselines the term is for),
# or when it has no summary at all.
ROC_VERIFIER_MAX_VAL_ERR = 0.3
ROC_VERIFIER_MIN_VAL_SPAN_DEG = 180.0


class One2AnyBackend(Backend):
    name = "one2any"
    search_min_confidence = 0.5  # paired on compare_tracking, two seeds: published wrong 95 -> 76 / 64 -> 60, no bin
    # lower beyond its interval, the long sequences' one pose while away gone (docs/tracking.md)

    def __init__(self, device: str = "auto", checkpoint: str | None = None, *, with_classic: bool = True,
                 roc_to_verifier: bool | None = None, query_rolls: int | None = None, threads: int | None = None,
                 scorer: str | bool | None = None, scorer_weight: float | None = None) -> None:
        """Load ``checkpoint`` (None or "" = the bundled ``model/default``); CheckpointError when it cannot.

        ``with_classic``: pool the classic grid-search hypotheses with the network's
        (docs/architecture.md, One frame).
        ``roc_to_verifier``: hand the predicted ROC to the verifier's ROC term; None = decided by the
        checkpoint's validation ROC error (see ROC_VERIFIER_MAX_VAL_ERR).
        ``query_rolls``: 1 = the query crop as seen; 2-4 = also turned by 90, 180, 270 deg in the image plane,
        one batched decoder pass, each roll's RANSAC hypotheses pooled (model.inputs.roll_query_input);
        None = the checkpoint's ``inference.query_rolls`` (chosen on validation by one2any_ros.training.promote), else 1.
        ``scorer``: the learned hypothesis scorer (model/scorer.py) whose term re-ranks the refined candidates: a
        path, False = none, None = the bundled ``model/default_scorer`` when the bundled network is used and the
        file exists (it was trained on that network's hypothesis pools). ``scorer_weight``: its weight in the
        ranking; None = the one recorded in the scorer's JSON (chosen when it was trained); 0 = off.
        ``threads``: torch's CPU thread count (process-wide); None = half the cores (at least 1) on a CPU: a
        node sharing its cores with a camera driver and its own executor thread should not use them all, OpenMP
        spin-waiting on busy cores slows the decoder many times over (docs/architecture.md, Choices measured)."""
        self.device = resolve_device(device)
        if threads is None and self.device.type == "cpu":
            threads = max(1, (os.cpu_count() or 2) // 2)
        if threads is not None:
            torch.set_num_threads(max(int(threads), 1))
        try:
            self.model, self.config = load_checkpoint(checkpoint or None, device=self.device)
        except CheckpointError:
            raise
        except (OSError, RuntimeError) as e:  # e.g. CUDA out of memory while moving the weights
            raise CheckpointError(f"checkpoint {checkpoint or 'default'} could not be loaded on {self.device}: {e}") from e
        self.checkpoint_path = str(checkpoint or DEFAULT_CHECKPOINT)
        self.input_size = int(self.model.cfg.input_size)
        self.checkpoint_id = str(self.config.get("sha256", ""))[:16]
        self.classic = ClassicBackend() if with_classic else None
        self.val_roc_err = _val_roc_err(self.config)
        self.roc_to_verifier = _roc_trustworthy(self.config) if roc_to_verifier is None else bool(roc_to_verifier)
        span = ((self.config.get("training") or {}).get("pair_sampler") or {}).get("max_rotation_deg")
        self.anchored_span_deg = float(span) if isinstance(span, (int, float)) else None  # the view change trained for
        rolls = (self.config.get("inference") or {}).get("query_rolls", 1) if query_rolls is None else query_rolls
        if not isinstance(rolls, int) or not 1 <= rolls <= 4:
            raise One2AnyError(f"query_rolls must be an integer 1-4, got {rolls!r}", reason="bad_parameter")
        self.query_rolls = rolls
        self.encoder_calls = 0  # how often the ROPE encoder ran (tests check it is once per reference)
        self.scorer, self.scorer_meta, self.scorer_path, self.scorer_note = None, {}, None, ""
        implicit = scorer is None
        if implicit and not checkpoint and DEFAULT_SCORER.exists():
            scorer = str(DEFAULT_SCORER)
        if scorer:
            self.scorer, self.scorer_meta = load_scorer(scorer)
            self.scorer_path = str(scorer)
            trained_on = (self.scorer_meta.get("training") or {}).get("network_sha256")
            if implicit and trained_on and trained_on != self.config.get("sha256"):
                # it learned to rank another network's pools (a new network was bundled since): not used
                self.scorer_note = (f"bundled scorer not used: trained on the pools of network {trained_on[:12]}, "
                                    f"this is {str(self.config.get('sha256'))[:12]}; run one2any train-scorer --export")
                self.scorer, self.scorer_meta, self.scorer_path = None, {}, None
        self.scorer_weight = float(self.scorer_meta.get("weight", 0.0) if scorer_weight is None else scorer_weight)
        if not np.isfinite(self.scorer_weight) or self.scorer_weight < 0:
            raise One2AnyError(f"scorer_weight must be a finite number >= 0, got {scorer_weight!r}", reason="bad_parameter")
        self._scorer_ref: tuple[Reference, ScorerReference] | None = None  # the splatted cloud, once per reference

    def describe(self) -> dict:
        tr = self.config.get("training") or {}
        return {"backend": self.name, "checkpoint": self.checkpoint_path, "checkpoint_sha256": self.config.get("sha256"),
                "training": {k: tr.get(k) for k in ("steps", "samples", "elapsed_s", "best_val_roc_err") if k in tr},
                "max_rotation_deg_trained": (tr.get("pair_sampler") or {}).get("max_rotation_deg"),
                "roc_to_verifier": self.roc_to_verifier, "query_rolls": self.query_rolls, "device": str(self.device),
                "scorer": self.scorer_path if self.scorer is not None and self.scorer_weight > 0 else None,
                "scorer_weight": self.scorer_weight if self.scorer is not None else None,
                **({"scorer_note": self.scorer_note} if self.scorer_note else {})}

    # --- reference ---------------------------------------------------------------------------------
    def encode_reference(self, ref: Reference) -> None:
        x, valid, _ = reference_input(ref, self.input_size)
        with torch.inference_mode():
            emb = self.model.encode(torch.from_numpy(x)[None].to(self.device), torch.from_numpy(valid)[None].to(self.device))
        self.encoder_calls += 1
        ref.embedding = {k: emb[k][0].float().cpu().numpy() if k != "valid" else emb[k][0].cpu().numpy() for k in EMBEDDING_KEYS}
        ref.embedding["checkpoint_id"] = np.frombuffer(self.checkpoint_id.encode(), np.uint8).copy()
        ref.embedding_backend = self.name

    def _embedding(self, ref: Reference) -> dict[str, torch.Tensor]:
        emb = ref.embedding
        stored_id = bytes(np.asarray(emb.get("checkpoint_id", np.zeros(0, np.uint8)), np.uint8)).decode(errors="replace")
        if stored_id != self.checkpoint_id or any(k not in emb for k in EMBEDDING_KEYS):
            self.encode_reference(ref)  # from another checkpoint (or none): encode once, then cached again
            emb = ref.embedding
        return {k: torch.from_numpy(np.asarray(emb[k]))[None].to(self.device) for k in EMBEDDING_KEYS}

    # --- query -------------------------------------------------------------------------------------
    def predict(self, ref: Reference, view: View, rolls: int = 1, valid: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, CropWindow]:
        """The network's output over the query crop: (ROC (R,3,G,G) in reference-radius units, confidence
        (R,1,G,G) in 0..1, the crop window), one row per roll (the crop turned by r x 90 deg, its output turned
        back), all rolls in one batched pass. G = input_size / output_stride. ``valid``: the view's object depth
        mask when known (``query_input``)."""
        emb = self._embedding(ref)
        x, win = query_input(view, ref.scale, self.input_size, valid)
        xs = np.stack([roll_query_input(x, r) for r in range(rolls)])
        with torch.inference_mode():
            out = self.model.decode(torch.from_numpy(xs).to(self.device),
                                    {k: v.expand(rolls, *v.shape[1:]) for k, v in emb.items()})
        roc = out["roc"].float().cpu().numpy()
        conf = confidence_from_log_b(out["log_b"].float()).cpu().numpy()
        return (np.stack([unroll_output(roc[r], r) for r in range(rolls)]),
                np.stack([unroll_output(conf[r], r) for r in range(rolls)]), win)

    def propose(self, ref: Reference, query: QueryContext, settings: SearchSettings, diameter: float) -> Proposal:
        """The network's hypotheses, then the classic grid's. With a second core the network runs on a thread of
        its own beside the grid (core/background.py): the same hypotheses, its ~17 ms hidden behind the grid's
        multi-start ICP; "network" and "ransac" then time its own work, not the wait."""
        if self.classic is None:
            return self.anchored_hypotheses(ref, query, settings, diameter)
        beside = BackgroundCall(self.anchored_hypotheses, ref, query, settings, diameter) if overlap_pays() else None
        t0 = time.perf_counter()
        try:
            grid = self.classic.propose(ref, query, settings, diameter)
        except BaseException:
            if beside is not None:
                beside.wait()  # never leave it running past the frame
            raise
        grid_ms = 1000.0 * (time.perf_counter() - t0)
        prop = beside.result() if beside is not None else self.anchored_hypotheses(ref, query, settings, diameter)
        prop.timings_ms["grid"] = grid_ms
        prop.T_query_C = np.concatenate([prop.T_query_C, grid.T_query_C])
        prop.sources = prop.sources + grid.sources
        return prop

    def anchored_hypotheses(self, ref: Reference, query: QueryContext, settings: SearchSettings,
                            diameter: float) -> Proposal:
        """The network's hypotheses alone: RANSAC + Umeyama on its ROC prediction, without the grid. They come from
        the reference, not from any last pose, so tracking takes them as starts too (``track_network_every``)."""
        t0 = time.perf_counter()
        roc_grids, conf_grids, win = self.predict(ref, query.view, self.query_rolls, query.depth_mask())
        t1 = time.perf_counter()
        Ts, sources = [], []
        n_points = RANSAC_POINTS if self.query_rolls == 1 else ROLL_RANSAC_POINTS
        iterations = settings.ransac_iterations if self.query_rolls == 1 else max(settings.ransac_iterations // 2, 32)
        k = max(settings.ransac_hypotheses, 0)
        thresholds = tuple(RANSAC_THRESHOLD_STEPS[i % len(RANSAC_THRESHOLD_STEPS)] * settings.ransac_threshold * diameter
                           for i in range(k))
        for r in range(self.query_rolls):
            roc = output_at_pixels(roc_grids[r], win, query.pixels).astype(np.float64)  # (N,3)
            weight = output_at_pixels(conf_grids[r], win, query.pixels)[:, 0].astype(np.float64)  # (N,)
            if r == 0:
                roc_pred, roc_weight = roc, weight  # the verifier's ROC term reads the unrolled prediction
            rng = np.random.default_rng(r)
            sel = subsample(query.points, n_points, rng)
            if len(sel) < 3 or not k:
                continue
            for res in ransac_rigid_thresholds(roc[sel] * ref.scale, query.points[sel], weight[sel] + 1e-3,
                                               thresholds=thresholds, iterations=iterations, rng=rng):
                if res.num_inliers >= 3:
                    Ts.append(res.T)
                    sources.append("ransac" if r == 0 else f"ransac_roll{90 * r}")
        timings = {"network": 1000.0 * (t1 - t0), "ransac": 1000.0 * (time.perf_counter() - t1)}
        T = np.stack(Ts) if Ts else np.zeros((0, 4, 4))
        if not self.roc_to_verifier:
            roc_pred = roc_weight = None
        return Proposal(T_query_C=T, sources=sources, roc_pred=roc_pred, roc_weight=roc_weight, timings_ms=timings)

    # --- the learned hypothesis scorer's term in the final ranking -------------------------------------
    def candidate_term(self, ref: Reference, query: QueryContext, T_query_C: np.ndarray, score: np.ndarray) -> np.ndarray | None:
        """scorer_weight x the scorer's logit for each refined candidate (None without a scorer or at weight 0)."""
        if self.scorer is None or self.scorer_weight <= 0 or len(T_query_C) == 0:
            return None
        logits = self.score_hypotheses(ref, query, T_query_C, score)
        return self.scorer_weight * logits

    def score_hypotheses(self, ref: Reference, query: QueryContext, T_query_C: np.ndarray, score: np.ndarray) -> np.ndarray:
        """The scorer's raw logits (B,) for hypotheses (B,4,4) with verifier scores (B,)."""
        if self._scorer_ref is None or self._scorer_ref[0] is not ref:
            self._scorer_ref = (ref, scorer_reference(ref.points_C, ref.colour_C, ref.diameter))
        v, key = query.view, (ref.diameter, self.scorer.cfg.grid)
        if key not in query.scorer_queries:
            query.scorer_queries[key] = scorer_query(v.depth, v.mask, query.target.colour, v.K, *key)
        sq = query.scorer_queries[key]
        images = comparison_images(np.asarray(T_query_C, np.float64), self._scorer_ref[1], sq)
        with torch.inference_mode():
            out = self.scorer(torch.from_numpy(images), torch.from_numpy(np.asarray(score, np.float32)))
        return out.numpy().astype(np.float64)


def _roc_trustworthy(meta: dict) -> bool:
    """Whether a checkpoint's ROC goes to the verifier: the choice measured on validation scenes and recorded
    by ``one2any_ros.training.promote`` (``inference.roc_to_verifier``) when there is one, else whether its own
    training validation vouches for its ROC over wide baselines (see ROC_VERIFIER_*)."""
    choice = (meta.get("inference") or {}).get("roc_to_verifier")
    if isinstance(choice, bool):
        return choice
    tr = meta.get("training")
    if not tr:
        return True  # no summary: whoever made the file vouches for it
    err = _val_roc_err(meta)
    span = float((tr.get("pair_sampler") or {}).get("max_rotation_deg", ROC_VERIFIER_MIN_VAL_SPAN_DEG))
    return err is not None and err < ROC_VERIFIER_MAX_VAL_ERR and span >= ROC_VERIFIER_MIN_VAL_SPAN_DEG


def _val_roc_err(meta: dict) -> float | None:
    """The validation ROC error recorded in a checkpoint's training summary (None when absent)."""
    tr = meta.get("training") or {}
    for key in ("val", "last_val"):
        v = tr.get(key)
        if isinstance(v, dict) and isinstance(v.get("val_roc_err"), (int, float)):
            return float(v["val_roc_err"])
    return None
