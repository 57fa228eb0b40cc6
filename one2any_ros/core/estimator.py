"""The public API: ``PoseEstimator(backend).set_reference(view)`` then ``.estimate(view) -> PoseResult``.

One pipeline for every backend (docs/architecture.md, One frame): the backend proposes hypotheses of
T_query_C, the last good pose joins them when there is one, one verifier scores them all, the best few are
refined by guarded ICP (a refined pose is kept only if it scores better), a learned backend may add its
hypothesis scorer's term to those few (``Backend.candidate_term``), and the winner must pass the inlier and
confidence gates or the call raises EstimationFailure. Tracking mode first runs a local search around the last good
pose and hands the frame to the global search only when its winner is not trusted (re-detection on loss); without a
segmenter's mask (``require_trust``, core/tracking.py) the global search's winner must pass the same trust test, else
the object is "lost".
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from one2any_ros.core import camera, icp_kernels
from one2any_ros.core.backends import Backend, Proposal, QueryContext, create_backend
from one2any_ros.core.candidates import Candidates, HypothesisPool, StageTimer
from one2any_ros.core.errors import EstimationFailure, InputError
from one2any_ros.core.estimator_settings import EstimatorSettings
from one2any_ros.core.geometry import icp_batched, invert_transform, rotation_angle_deg, subsample, transform_points
from one2any_ros.core.nearest import KDTree
from one2any_ros.core.reference import Reference, make_reference, require_reference
from one2any_ros.core.reference_cache import (RefCache, axis_spins, build_ref_cache, reference_axis, sphere_turns,
                                             track_turns)
from one2any_ros.core.frame import View
from one2any_ros.core.verify import DepthTarget, VerifyResult, make_target, verify


@dataclass
class PoseResult:
    T_camera_object: np.ndarray  # (4,4) pose of the object frame O in the query camera, metres
    T_camera_C: np.ndarray  # (4,4) pose of the canonical frame C
    confidence: float  # 0..1
    inliers: int
    residual_m: float  # RMS distance of the inliers
    score: float  # verifier score of the winner
    backend: str
    mode: str  # "global" or "track"
    source: str  # which proposal won ("grid", "ransac", "track", ...)
    num_hypotheses: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    appearance: float | None = None  # the winner's appearance score (core/appearance.py); None when the term is off
    verifier_confidence: float | None = None  # the verifier's confidence before the appearance folded in (the gates')


class PoseEstimator:
    def __init__(self, backend: str | Backend = "auto", *, settings: EstimatorSettings | None = None,
                 device: str = "auto", checkpoint: str | None = None) -> None:
        self.backend: Backend = create_backend(backend, device=device, checkpoint=checkpoint) if isinstance(backend, str) else backend
        self.settings = settings or EstimatorSettings()
        self.reference: Reference | None = None
        self._cache: RefCache | None = None
        self.last_T_C: np.ndarray | None = None  # last good pose of C in the camera (tracking)
        self._motion: tuple[np.ndarray, np.ndarray] | None = None  # (pose, the camera-frame step that led to it)
        self._tracked_frames = 0  # tracked frames since the reference was set (``track_network_every``)
        self.record_pool = False  # keep the last global search's hypotheses in ``last_pool`` (diagnosis only)
        self.last_pool: HypothesisPool | None = None
        icp_kernels.warm_up()  # the ICP's compiled loops, once per process: now rather than on the first frame

    # --- reference -----------------------------------------------------------------------------------
    def set_reference(self, view_or_ref: View | Reference) -> Reference:
        """Encode a reference view (or adopt a loaded Reference, re-encoding only if its cached embedding
        is from another backend). Resets tracking."""
        ref = ensure_embedding(view_or_ref if isinstance(view_or_ref, Reference) else make_reference(view_or_ref),
                               self.backend)
        self._cache = build_ref_cache(ref, self.settings)
        self.reference = ref
        self.last_T_C = self._motion = None
        self._tracked_frames = 0
        return ref

    def clear_reference(self) -> None:
        self.reference = None
        self._cache = None
        self.last_T_C = self._motion = None

    def set_backend(self, backend: str | Backend, **kw) -> None:
        self.backend = create_backend(backend, **kw) if isinstance(backend, str) else backend
        if self.reference is not None:
            self.set_reference(self.reference)

    # --- estimation ----------------------------------------------------------------------------------
    def _context(self, view: View, near_depth: np.ndarray | None = None) -> QueryContext:
        pts, pix = camera.backproject(view.depth, view.K, camera.object_depth_mask(view.depth, view.K, view.mask))
        if len(pts) < camera.MIN_MASK_PIXELS:
            raise InputError(f"only {len(pts)} object pixels have usable depth", reason="too_little_depth")
        ti = subsample(pts, self.settings.tree_points)
        target = make_target(view.depth, view.mask, view.K, view.rgb, near=near_depth)
        return QueryContext(view=view, points=pts, pixels=pix, tree=KDTree(pts[ti]), centroid=np.median(pts, axis=0),
                            colour=target.colour[pix[:, 0], pix[:, 1]], tree_index=ti, target=target)

    def _score(self, T: np.ndarray, q: QueryContext, qsel: np.ndarray, qcol: np.ndarray, qtarget: DepthTarget,
               roc_pred, roc_w) -> VerifyResult:
        ref, c = self.reference, self._cache
        return verify(T, ref_points_C=c.verify_points, ref_colours=c.verify_colours, ref_target=c.target,
                      T_refcam_C=ref.T_refcam_C, query_points=q.points[qsel], query_colours=qcol,
                      query_target=qtarget, diameter=ref.diameter, weights=self.settings.verifier,
                      roc_pred=None if roc_pred is None else roc_pred[qsel],
                      roc_weight=None if roc_w is None else roc_w[qsel], scale=ref.scale)

    def _refine(self, T: np.ndarray, q: QueryContext, *, n_points: int | None = None,
                iterations: int | None = None) -> np.ndarray:
        s, d, c = self.settings, self.reference.diameter, self._cache
        i = subsample(c.refine_points, n_points) if n_points else slice(None)
        lam = s.refine_colour_weight * d
        return icp_batched(c.refine_points[i], q.colour_tree(lam) if lam > 0 else q.tree, T,
                           thresholds=tuple(t * d for t in s.refine_thresholds),
                           iterations=iterations or s.refine_iterations,
                           src_feat=lam * c.refine_colour[i] if lam > 0 else None).T

    def _sweep(self, T: np.ndarray, q: QueryContext) -> np.ndarray:
        """Spin each hypothesis about the reference's principal axes and let a short coloured ICP settle
        the variants: shapes with a symmetry (bottles, bowls, boxes) fit equally well at every spin, and
        only the texture (verifier colour term) can choose; the grid alone leaves that spin too coarse."""
        s, d, c = self.settings, self.reference.diameter, self._cache
        Tv = (T[:, None] @ c.sweep[None]).reshape(-1, 4, 4)
        i = subsample(c.refine_points, s.sweep_points)
        lam = s.refine_colour_weight * d
        return icp_batched(c.refine_points[i], q.colour_tree(lam) if lam > 0 else q.tree, Tv,
                           thresholds=tuple(t * d for t in s.refine_thresholds[:1]), iterations=s.sweep_iterations,
                           src_feat=lam * c.refine_colour[i] if lam > 0 else None).T

    def _twins(self, T: np.ndarray, q: QueryContext, score: Callable[[np.ndarray], VerifyResult]) -> np.ndarray:
        """Geometric twins of candidates T (k,4,4): the reference's twin motions (symmetry.twins about the axis of
        revolution cached with the reference: spins about it, quarter turns and flips about its principal axes)
        applied to each candidate, each settled by a short coloured ICP that starts coarse. With ``twin_keep`` the
        coarsest stage matches by the frame's table lookup (nearest.VoxelNearest, as the global search's coarse stage)
        and only the ``twin_keep`` twins that the verifier and appearance together prefer go on (``_twin_rank``): the
        6-D KD-tree queries of all 32-69 twins were ~90 % of the stage's ~180 ms. Geometry alone cannot tell twins
        apart (every spin of a cylinder has the same inliers); appearance and the margin must."""
        s, d, c = self.settings, self.reference.diameter, self._cache
        if c.twins is None:
            from one2any_ros.core.symmetry import TwinSettings, twins

            ref = self.reference
            c.twins = twins(ref.points_C, ref.scale, reference_axis(c, ref),
                            TwinSettings(spin_angles=s.twin_angles, depth_offset=s.twin_depth_offset)).transforms
        if not len(c.twins):
            return np.zeros((0, 4, 4))
        Tv = (T[:, None] @ c.twins[None]).reshape(-1, 4, 4)
        i = subsample(c.refine_points, s.twin_points)
        thresholds = tuple(t * d for t in s.twin_thresholds)
        if 0 < s.twin_keep < len(Tv) and s.search.lookup_cell > 0 and len(thresholds) > 1:
            Tv = icp_batched(c.refine_points[i], q.voxel_nearest(s.search.lookup_cell * d, thresholds[0]), Tv,
                             thresholds=thresholds[:1], iterations=s.twin_iterations).T
            Tv, thresholds = Tv[self._twin_rank(Tv, q, score)[: s.twin_keep]], thresholds[1:]
        lam = s.refine_colour_weight * d
        return icp_batched(c.refine_points[i], q.colour_tree(lam) if lam > 0 else q.tree, Tv,
                           thresholds=thresholds, iterations=s.twin_iterations,
                           src_feat=lam * c.refine_colour[i] if lam > 0 else None).T

    def _twin_rank(self, Tv: np.ndarray, q: QueryContext, score: Callable[[np.ndarray], VerifyResult]) -> np.ndarray:
        """Twins in the order the final choice would rank them (``_with_appearance``), best first; their appearance
        on every k-th of the reference's appearance points (``twin_rank_points``, the shrinkage's n0 scaled alike):
        the ranking only picks the ``twin_keep`` that go on, and the choice scores those on every point."""
        return np.argsort(-self._with_appearance(Tv, q, score, points=self.settings.twin_rank_points)[2],
                          kind="stable")

    def _with_appearance(self, T: np.ndarray, q: QueryContext, score: Callable[[np.ndarray], VerifyResult],
                         points: int = 0) -> tuple[VerifyResult, np.ndarray | None, np.ndarray]:
        """Poses T (k,4,4) weighed as ``_choose`` weighs candidates: (their VerifyResult, their appearance scores or
        None when the term is off, the verifier's score + ``appearance_weight`` x the appearance score);
        ``points``: as ``_appearance``'s."""
        vr = score(T)
        if self.settings.appearance_weight <= 0:
            return vr, None, vr.score
        app = self._appearance(T, q, points)
        return vr, app, vr.score + self.settings.appearance_weight * app

    def _appearance(self, T: np.ndarray, q: QueryContext, points: int = 0) -> np.ndarray:
        """Appearance scores of poses T (k,4,4); ``points`` > 0: on every k-th of the reference's appearance points,
        about that many, with the shrinkage's n0 scaled by the same share (``twin_rank_points``)."""
        from one2any_ros.core import appearance as app

        ref, c = self.reference, self._cache
        aset = app.AppearanceSettings(max_points=self.settings.appearance_points)
        if c.appearance is None:
            c.appearance = app.reference_appearance(ref, aset)
        if aset not in q.appearance_images:  # once per frame: the choice and the spin both score on it
            q.appearance_images[aset] = app.appearance_image(q.view.rgb, q.view.mask, aset)
        img = q.appearance_images[aset]
        tau = max(self.settings.verifier.tau * ref.diameter, self.settings.verifier.tau_min_m)
        model, used = c.appearance, aset
        if 0 < points < len(model.points_C):
            if points not in c.appearance_subsets:
                k = len(model.points_C) // points
                c.appearance_subsets[points] = app.AppearanceModel(points_C=model.points_C[::k], signal=model.signal[::k])
            sub = c.appearance_subsets[points]
            model, used = sub, replace(aset, n0=aset.n0 * len(sub.points_C) / len(c.appearance.points_C))
        return app.appearance_scores(model, T, img, q.view.depth, q.view.mask, q.view.K, tau, used).score

    def estimate(self, view: View, *, track: bool = False, near_depth: np.ndarray | None = None,
                 require_trust: bool = False) -> PoseResult:
        """Pose of the reference object in ``view``. ``track=True`` starts from the last good pose. ``near_depth``:
        ``verify.near_depth(view.depth)`` when the caller already has it (several objects in one frame).
        ``require_trust``: the view is not a segmenter's mask (a predicted silhouette, a search region), so a global
        search's winner must pass the same trust test as a tracked one (``_trusted``), else EstimationFailure("lost")."""
        ref = require_reference(self.reference)
        tm = StageTimer()
        q = self._context(view, near_depth)
        qsel = subsample(q.points, self.settings.verify_points, np.random.default_rng(1))
        qcol = q.colour[qsel]
        tm.lap("prepare")
        if track and self.last_T_C is not None:
            tracked = self._track(q, qsel, qcol, tm, require_trust)
            if tracked is not None:
                return tracked
        return self._global_search(ref, q, qsel, qcol, tm, require_trust=require_trust)

    def _trusted(self, confidence: float, appearance: float | None, require_trust: bool = False,
                 searched: bool = False) -> bool:
        """Whether a tracked pose (or, with ``require_trust``, any pose found without a segmenter's mask) is trusted:
        its confidence passes ``track_min_confidence`` (a global search's winner, ``searched``: the backend's bar,
        ``_search_min_confidence``) and its appearance score passes ``track_min_appearance`` (for a global search's
        winner scaled by ``_appearance_ceiling``).
        Without a mask, a reference with no texture (``texture_min_std``) is trusted on its confidence alone: its
        appearance score is near 0 at every pose (with a mask, an untrusted tracked pose only hands the frame to the
        global search, so nothing changes there)."""
        s = self.settings
        if confidence < (self._search_min_confidence() if searched else s.track_min_confidence):
            return False
        if s.track_min_appearance <= 0 or appearance is None or (require_trust and not self._cache.textured):
            return True
        return bool(appearance >= s.track_min_appearance * (self._appearance_ceiling() if searched else 1.0))

    def _search_min_confidence(self) -> float:
        """The bar of a global search's winner found without a mask: the setting, else the backend's own."""
        s = self.settings.search_min_confidence
        return self.backend.search_min_confidence if s is None else s

    def _appearance_ceiling(self) -> float:
        """The most the appearance score can reach for this reference: it is shrunk by n / (n + n0) for n co-visible
        points (appearance.py), and n never exceeds the reference's own points. A small object (under ~200 pixels)
        could not pass ``track_min_appearance`` at its true pose, so it was never trusted again once tracked without
        a mask. A lost object's search scales its threshold by this ceiling (1 for an object of thousands of pixels);
        tracking does not (paired, scaling it there too published 14 more wrong poses for 2 fewer right)."""
        from one2any_ros.core.appearance import AppearanceSettings

        model = self._cache.appearance
        if model is None:
            return 1.0
        m, n0 = len(model.points_C), AppearanceSettings().n0
        return m / (m + n0) if m else 1.0

    def _track(self, q: QueryContext, qsel: np.ndarray, qcol: np.ndarray, tm: StageTimer,
               require_trust: bool = False) -> PoseResult | None:
        """A local search from the last good pose: it and its turns (``track_turn_deg``) are verified, the best
        refined (``track_points``, ``track_iterations``) and chosen like a global search's candidates (``_choose``).
        None when the winner is not trusted (``_trusted``), and the global search takes over."""
        s, ref = self.settings, self.reference
        turns = self._cache.track_turns.get(s.track_turn_deg)
        if turns is None:
            turns = self._cache.track_turns[s.track_turn_deg] = track_turns(ref.points_C, s.track_turn_deg)
        starts = self.last_T_C[None] @ turns
        if s.track_velocity and self._motion is not None and np.array_equal(self._motion[0], self.last_T_C):
            # the last step repeated: an object turning fast runs ahead of the turns about the last pose
            starts = np.concatenate([starts, (self._motion[1] @ self.last_T_C)[None]])

        def score(T: np.ndarray) -> VerifyResult:
            return self._score(T, q, qsel, qcol, q.target, None, None)

        self._tracked_frames += 1
        anchored = self._anchored_starts(q)
        if anchored is None:
            anchored = np.zeros((0, 4, 4))
        else:
            tm.lap("anchored")
        n_tracked, starts = len(starts), np.concatenate([starts, anchored])
        vr = score(starts)
        # the best anchored hypothesis (by the verifier) is refined beside the best tracked starts, never in place of
        # one of them, in the same ICP batch (a batch costs its calls, not its points)
        top = np.concatenate([np.argsort(-vr.score[:n_tracked])[: s.refine_top_k],
                              n_tracked + np.argsort(-vr.score[n_tracked:])[:1]])
        c = self._refine_best(starts, ["track"] * n_tracked + ["network"] * len(anchored), vr, score, ref, q, tm,
                              n_points=s.track_points, iterations=s.track_iterations, top=top)
        best, app_score, conf_before = self._choose(c, q, tm)
        best = self._tracked_winner(c, best, app_score, conf_before)
        if app_score is not None:
            self._spin_winner(c, best, app_score, conf_before, score, q, tm)
            self._sphere_winner(c, best, app_score, score, q, tm)
        appearance = None if app_score is None else float(app_score[best])
        if not self._trusted(float(c.conf[best]), appearance, require_trust):
            return None
        return self._finish(c.T[best], c.result(), best, q, "track", "track", len(starts), tm, appearance)

    def _anchored_starts(self, q: QueryContext) -> np.ndarray | None:
        """(k,4,4) tracking starts from the backend's anchored hypotheses, asked for on every
        ``track_network_every``-th tracked frame (counted from the reference); None when not asked: on the other
        frames, or when the last pose views the object from farther than the backend's trained span
        (``Backend.anchored_span_deg``) off the reference's view (a network trained on view changes up to 90 deg is
        not asked beyond them; docs/tracking.md, "Starts from the reference"), and when the backend has none."""
        s, ref, b = self.settings, self.reference, self.backend
        if s.track_network_every <= 0 or (self._tracked_frames - 1) % s.track_network_every:
            return None
        if b.anchored_span_deg is not None and float(
                rotation_angle_deg(self.last_T_C[:3, :3] @ ref.T_refcam_C[:3, :3].T)) > b.anchored_span_deg:
            return None
        prop = b.anchored_hypotheses(ref, q, s.search, ref.diameter)
        return None if prop is None else prop.T_query_C

    def _tracked_winner(self, c: Candidates, best: int, app_score: np.ndarray | None, conf_before: np.ndarray) -> int:
        """A candidate from the backend's anchored hypotheses keeps tracking's win only when its appearance is at least
        the best tracked candidate's; else the best tracked candidate wins, its confidence margin taken among the
        tracked candidates alone: an anchored candidate that does not win changes nothing. Those hypotheses catch a
        pose that lags where geometry cannot see the turn (a bowl's near-spherical side); let win on verifier and
        learned term alone they also beat right tracked poses with a worse texture fit, and counted as rivals they
        lowered right tracked poses below the trust test (docs/tracking.md, "Starts from the reference")."""
        anchored = np.array([src == "network" for src in c.sources])
        own = ~anchored & np.isfinite(c.score)
        if not anchored.any() or not own.any():
            return best
        j = int(np.flatnonzero(own)[np.argmax(c.score[own])])
        if anchored[best] and app_score is not None and app_score[best] >= app_score[j]:
            return best
        c.conf = conf_before
        if self.settings.confidence_margin > 0:
            c.conf = self._margin_confidence(c, j, among=own)
        return j

    def _spin_winner(self, c: Candidates, best: int, app_score: np.ndarray, conf_before: np.ndarray,
                     score: Callable[[np.ndarray], VerifyResult], q: QueryContext, tm: StageTimer) -> None:
        """Turn tracking's winner about the reference's axis of revolution (when its visible surface has one and it
        has texture) by every ``track_spin_step_deg`` within +-``track_spin_deg``, and keep the turn that the
        verifier and appearance together (the weights ``_choose`` uses) prefer. Geometry cannot see a turn about
        that axis, so ICP leaves it where the last pose had it and tracking lagged behind a turning cylinder or
        frustum; the appearance score is smooth in it (docs/tracking.md, "Turns only texture sees"). Updates the
        winner's pose, appearance and confidence (its verifier's, times the rival margin ``_choose`` applied)."""
        s = self.settings
        spins = axis_spins(self._cache, self.reference, self.settings)
        if not len(spins) or not self._cache.textured:
            return
        Ts = c.T[best][None] @ spins
        vr, app, combined = self._with_appearance(Ts, q, score)  # spins exist only with the appearance term on
        j = int(np.argmax(combined))
        if combined[j] > c.verifier_score[best] + s.appearance_weight * app_score[best]:
            margin = c.conf[best] / conf_before[best] if conf_before[best] > 0 else 1.0
            c.T[best], app_score[best], c.conf[best] = Ts[j], app[j], vr.confidence[j] * margin
        tm.lap("spin")

    def _sphere_winner(self, c: Candidates, best: int, app_score: np.ndarray,
                       score: Callable[[np.ndarray], VerifyResult], q: QueryContext, tm: StageTimer) -> None:
        """Turn tracking's winner about the centre of the sphere the reference's visible surface lies on (when it
        does, within ``track_sphere_max_residual``, and has texture): a pattern search over turns about x, y and z
        (``track_sphere_steps_deg``, each step's 27 turns about the best so far), appearance alone choosing on
        ``twin_rank_points`` of its points. The best turn replaces the winner when its appearance on every point is
        higher and its verifier score at most ``track_sphere_verifier_slack`` lower. Every turn about that centre
        keeps a sphere's surface, so neither ICP nor the verifier sees them (its noise of +-0.03 between turns 3 deg
        apart chose poses 15-25 deg off on the long sets' bowls), while the texture peaks at the truth; the axis of
        revolution fitted to such a piece is arbitrary, so ``_spin_winner`` turns about the wrong line there
        (docs/tracking.md, "A bowl turned about its centre")."""
        s = self.settings
        neighbourhoods = sphere_turns(self._cache, self.reference, s)
        if not neighbourhoods or not self._cache.textured:
            return
        X, moved = np.eye(4), False  # the best turn of C so far
        for turns in neighbourhoods:
            Xs = X[None] @ turns
            j = int(np.argmax(self._appearance(c.T[best][None] @ Xs, q, points=s.twin_rank_points)))
            X, moved = Xs[j], moved or j > 0  # turns[0] is the identity: a tie keeps the pose
        if not moved:  # the winner as it is: nothing to weigh
            tm.lap("sphere")
            return
        T = c.T[best] @ X
        vr, app = score(np.stack([c.T[best], T])), self._appearance(T[None], q)  # the winner as it is now (spun)
        margin = c.conf[best] / vr.confidence[0] if vr.confidence[0] > 0 else 1.0  # the rival margin _choose applied
        conf = vr.confidence[1] * margin
        if (app[0] > app_score[best] and vr.score[1] >= vr.score[0] - s.track_sphere_verifier_slack
                and (self._trusted(conf, app[0]) or not self._trusted(c.conf[best], app_score[best]))):
            # (a turn never makes a trusted pose untrusted: the track would be lost for a texture's guess)
            c.T[best], app_score[best], c.conf[best] = T, app[0], conf
        tm.lap("sphere")

    def _global_search(self, ref: Reference, q: QueryContext, qsel: np.ndarray, qcol: np.ndarray,
                       tm: StageTimer, *, require_trust: bool = False) -> PoseResult:
        """Pool the backend's hypotheses (and the last pose), verify them all with one scorer, refine the best few,
        then let the backend's term, geometric twins and appearance decide among those."""
        s = self.settings
        prop = self.backend.propose(ref, q, s.search, ref.diameter)
        tm.lap("hypotheses")
        tm.ms.update(prop.timings_ms)

        def score(T: np.ndarray) -> VerifyResult:
            return self._score(T, q, qsel, qcol, q.target, prop.roc_pred, prop.roc_weight)

        Ts, sources, vr = self._pool(prop, score, q, tm)
        c = self._refine_best(Ts, sources, vr, score, ref, q, tm)
        if s.twin_top_k > 0 and not require_trust:  # a segmenter's mask: without one (tracking's re-detection, a
            # lost object's search) the twins' appearance contest picked wrong turns (docs/validation.md, "Twins, cheap")
            self._add_twins(c, score, ref, q, tm)
        best, app_score, conf_before = self._choose(c, q, tm)
        if self.record_pool:
            self.last_pool = HypothesisPool(T_camera_C=Ts, sources=sources, score=vr.score, refined_T_camera_C=c.T,
                                            refined_score=c.verifier_score, chosen=best, refined_term=c.term,
                                            refined_sources=c.sources, refined_appearance=app_score,
                                            refined_confidence=conf_before)
        if require_trust and not self._trusted(float(c.conf[best]),
                                               None if app_score is None else float(app_score[best]), True, True):
            self.last_T_C = None
            raise EstimationFailure("no pose explains the depth and colour where it was (confidence below "
                                    f"{self._search_min_confidence():.2f} or appearance below track_min_appearance)",
                                    reason="lost")
        return self._finish(c.T[best], c.result(), best, q, "global", c.sources[best], len(Ts), tm,
                            None if app_score is None else float(app_score[best]))

    def _choose(self, c: Candidates, q: QueryContext, tm: StageTimer) -> tuple[int, np.ndarray | None, np.ndarray]:
        """The final choice among refined candidates (a global search's or tracking's): appearance rescores them,
        the best wins, its confidence lowered when a rival scores close. (winner index, each candidate's appearance
        score or None when the term is off, the confidences before the margin)."""
        s = self.settings
        app_score = self._apply_appearance(c, q, tm) if s.appearance_weight > 0 else None
        best = int(np.argmax(c.score))
        if c.sources[best] == "twin":
            best = self._twin_winner(c, app_score, best, q)
        conf_before = c.conf
        if s.confidence_margin > 0:
            c.conf = self._margin_confidence(c, best)
        return best, app_score, conf_before

    def _twin_winner(self, c: Candidates, app_score: np.ndarray | None, best: int, q: QueryContext) -> int:
        """A twin that scores best keeps the win only when its texture beats the best own candidate's by
        ``twin_min_appearance_gain`` (or no own candidate came close enough to be compared) and it passes the inlier
        gate: twins are there for texture to decide; where it cannot, the search's own candidate keeps the pose and
        the twin stays its rival (the margin lowers the confidence). A twin never turns a pose into a failure."""
        own = np.array([src != "twin" for src in c.sources]) & np.isfinite(c.score)
        if not own.any():
            return best
        j = int(np.flatnonzero(own)[np.argmax(c.score[own])])
        gain = np.inf if app_score is None else app_score[best] - app_score[j]
        if gain < self.settings.twin_min_appearance_gain or self._inliers(c.T[best], q)[0] < self.settings.min_inliers:
            return j
        return best

    def _pool(self, prop: Proposal, score: Callable[[np.ndarray], VerifyResult], q: QueryContext,
              tm: StageTimer) -> tuple[np.ndarray, list[str], VerifyResult]:
        """Every hypothesis, verified: the backend's, the last good pose, and the spin sweep's variants when it is on."""
        s = self.settings
        Ts, sources = prop.T_query_C, list(prop.sources)
        if self.last_T_C is not None:
            Ts = np.concatenate([Ts, self.last_T_C[None]])
            sources.append("track")
        vr = score(Ts)
        tm.lap("verify")
        if s.sweep_top_k > 0 and len(self._cache.sweep):
            Tv = self._sweep(Ts[np.argsort(-vr.score)[: s.sweep_top_k]], q)
            vv = score(Tv)
            Ts = np.concatenate([Ts, Tv])
            sources += ["sweep"] * len(Tv)
            vr = vr + vv
            tm.lap("sweep")
        return Ts, sources, vr

    def _refine_best(self, Ts: np.ndarray, sources: list[str], vr: VerifyResult,
                     score: Callable[[np.ndarray], VerifyResult], ref: Reference, q: QueryContext,
                     tm: StageTimer, *, n_points: int | None = None, iterations: int | None = None,
                     top: np.ndarray | None = None) -> Candidates:
        """The hypotheses ``top`` (indices; None: the best ``refine_top_k`` by the verifier) refined (a refinement is
        kept only if it scores better: the guard), plus the backend's own term on them (the learned scorer) when it
        has one."""
        if top is None:
            top = np.argsort(-vr.score)[: self.settings.refine_top_k]
        Tr = self._refine(Ts[top], q, n_points=n_points, iterations=iterations)
        vr_r = score(Tr)
        better = vr_r.score >= vr.score[top]  # a tie (a verifier saturated on a flat patch) keeps the refinement
        cand_T = np.where(better[:, None, None], Tr, Ts[top])
        cand_score = np.where(better, vr_r.score, vr.score[top])
        cand_conf = np.where(better, vr_r.confidence, vr.confidence[top])
        tm.lap("refine")
        term = self.backend.candidate_term(ref, q, cand_T, cand_score)
        verifier_score = cand_score
        if term is not None:
            cand_score = cand_score + term
            tm.lap("rerank")
        return Candidates(T=cand_T, score=cand_score, verifier_score=verifier_score, conf=cand_conf,
                           agree=vr.agree[top], violation=vr.violation[top], sources=[sources[i] for i in top],
                           term=term)

    def _add_twins(self, c: Candidates, score: Callable[[np.ndarray], VerifyResult], ref: Reference,
                   q: QueryContext, tm: StageTimer) -> None:
        """Geometric twins of the best ``twin_top_k`` candidates join them, scored the same way (also for a plain
        reference: nothing tells its twins apart, and the rival margin then lowers the confidence). A twin whose
        verifier confidence is below ``twin_min_confidence`` x the best candidate's (or the gate) does not join: a true
        twin explains the depth as well as its candidate, and where the verifier's score barely separates poses
        (small objects) a twin off the surface won on the learned term and failed the gates (0-30 deg, suite v1)."""
        s = self.settings
        Tt = self._twins(c.T[np.argsort(-c.score)[: s.twin_top_k]], q, score)
        if not len(Tt):
            return
        vt = score(Tt)
        ok = vt.confidence >= max(s.min_confidence, s.twin_min_confidence * float(c.conf.max()))
        if not ok.any():
            return
        Tt, vt = Tt[ok], VerifyResult(*(a[ok] for a in (vt.score, vt.confidence, vt.agree, vt.violation)))
        tt = self._twin_term(c, ref, q, Tt, vt.score)
        c.T = np.concatenate([c.T, Tt])
        c.verifier_score = np.concatenate([c.verifier_score, vt.score])
        c.score = np.concatenate([c.score, vt.score + (0.0 if tt is None else tt)])
        if c.term is not None:
            c.term = np.concatenate([c.term, tt])
        c.conf = np.concatenate([c.conf, vt.confidence])
        c.agree, c.violation = np.concatenate([c.agree, vt.agree]), np.concatenate([c.violation, vt.violation])
        c.sources = c.sources + ["twin"] * len(Tt)
        tm.lap("twins")

    def _twin_term(self, c: Candidates, ref: Reference, q: QueryContext, Tt: np.ndarray,
                   vt_score: np.ndarray) -> np.ndarray | None:
        """The backend's term on the twins (None when the candidates have none), computed only for the twins that
        appearance will compare (within ``appearance_margin`` of the best verifier score): the others drop out of
        the choice whatever their term (``_apply_appearance``), and the learned scorer cost up to ~200 ms on 69 twins.
        The rest get 0."""
        if c.term is None:
            return None
        s = self.settings
        keep = np.ones(len(Tt), bool)
        if s.appearance_weight > 0:
            keep = vt_score >= max(c.verifier_score.max(), vt_score.max()) - s.appearance_margin
        tt = np.zeros(len(Tt))
        if keep.any():
            t = self.backend.candidate_term(ref, q, Tt[keep], vt_score[keep])
            tt[keep] = 0.0 if t is None else t
        return tt

    def _apply_appearance(self, c: Candidates, q: QueryContext, tm: StageTimer) -> np.ndarray:
        """Texture decides among the candidates geometry cannot tell apart (within ``appearance_margin`` of the
        best verifier score); the others drop out. Returns each candidate's appearance score (NaN: not compared)."""
        s = self.settings
        close = c.verifier_score >= c.verifier_score.max() - s.appearance_margin
        app_score = np.full(len(c.T), np.nan)
        app_score[close] = self._appearance(c.T[close], q)
        c.score = np.where(close, c.score + s.appearance_weight * np.nan_to_num(app_score), -np.inf)
        tm.lap("appearance")
        return app_score

    def _margin_confidence(self, c: Candidates, best: int, among: np.ndarray | None = None) -> np.ndarray:
        """The candidates' confidences with the winner's lowered when a rival pose scores close to it. An ambiguous
        winner reports a low confidence, but the factor alone never fails a pose that passed the gate (geometry is
        right; which twin is not sure): it bottoms out at min_confidence. ``among``: (k,) bool, the candidates that
        count as rivals (None = all; the winner must be among them)."""
        from one2any_ros.core.appearance import margin_factor

        s = self.settings
        conf = c.conf.copy()
        idx = np.arange(len(c.score)) if among is None else np.flatnonzero(among)
        f = margin_factor(c.score[idx], c.T[idx], int(np.searchsorted(idx, best)), margin=s.confidence_margin,
                          min_deg=s.confidence_rival_deg)
        conf[best] = max(conf[best] * f, min(conf[best], s.min_confidence))
        return conf

    def _inliers(self, T_C: np.ndarray, q: QueryContext) -> tuple[int, float]:
        """(refinement points of the reference within the ``inlier_threshold`` band of the query surface at pose
        T_C, their RMS distance in metres (inf: none)): the inlier gate's numbers."""
        band = self.settings.inlier_threshold * self.reference.diameter
        dist, _ = q.tree.query(transform_points(T_C, self._cache.refine_points), k=1, distance_upper_bound=band)
        inl = np.isfinite(dist)
        return int(inl.sum()), float(np.sqrt(np.mean(dist[inl] ** 2))) if inl.any() else float("inf")

    def _finish(self, T_C: np.ndarray, vr: VerifyResult, i: int, q: QueryContext, mode: str, source: str,
                n_hyp: int, tm: StageTimer, appearance: float | None = None) -> PoseResult:
        ref, s = self.reference, self.settings
        inliers, residual = self._inliers(T_C, q)
        conf = float(vr.confidence[i])
        tm.lap("finish")
        tm.ms["total"] = tm.total_ms()
        if inliers < s.min_inliers or conf < s.min_confidence:
            self.last_T_C = None
            raise EstimationFailure(
                f"no trustworthy pose: {inliers} inliers (min {s.min_inliers}), confidence {conf:.2f} "
                f"(min {s.min_confidence:.2f})", reason="low_inliers" if inliers < s.min_inliers else "low_confidence")
        self._motion = None if self.last_T_C is None else (T_C, T_C @ invert_transform(self.last_T_C))
        self.last_T_C = T_C
        return PoseResult(T_camera_object=T_C @ ref.T_C_O, T_camera_C=T_C,
                          confidence=conf * self._appearance_factor(appearance), inliers=inliers,
                          residual_m=residual, score=float(vr.score[i]), backend=self.backend.name, mode=mode,
                          source=source, num_hypotheses=n_hyp, timings_ms=dict(tm.ms), appearance=appearance,
                          verifier_confidence=conf)

    def _appearance_factor(self, appearance: float | None) -> float:
        """What the texture leaves of the published confidence (``confidence_appearance``): 1 when the winner's
        appearance score reaches that share of the most this reference can score (``_appearance_ceiling``), falling to
        0 with it; 1 for a reference without texture (its score is noise) or with the term off. Geometry cannot tell a
        pose slid or turned along a near-symmetric surface from the right one, and the depth explains both equally
        well; among tracked poses the appearance ranks right above wrong far better than the verifier (AUROC ~0.84 vs
        ~0.69), so the number a client thresholds carries both. Decisions do not use it: they test both apart."""
        a0 = self.settings.confidence_appearance
        if a0 <= 0 or appearance is None or not self._cache.textured:
            return 1.0
        return float(np.clip(appearance / (a0 * self._appearance_ceiling()), 0.0, 1.0))


def ensure_embedding(ref: Reference, backend: Backend) -> Reference:
    """``ref`` with ``backend``'s embedding: encoded now unless it holds one from that backend already (a loaded
    reference, or one encoded in another process of the same node).

    Args:
        ref: the reference; its ``embedding`` and ``embedding_backend`` are replaced in place when encoded.
        backend: the backend whose ``encode_reference`` fills the embedding.

    Returns:
        ``ref`` itself.
    """
    if ref.embedding_backend != backend.name:
        ref.embedding = {}
        backend.encode_reference(ref)
        ref.embedding_backend = backend.name
    return ref
