"""Every tunable of the pose pipeline (``EstimatorSettings``): the search, the verifier, refinement, tracking, the
lost-object search and appearance, with the measurements that chose each default. One home, imported by the
estimator, the several-objects orchestrator, the ROS parameters and the evaluation tools. No ROS here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from one2any_ros.core.backends.base import SearchSettings
from one2any_ros.core.verify import VerifierWeights


@dataclass(frozen=True)
class EstimatorSettings:
    """Every tunable of the pipeline. Distances are fractions of the object diameter unless named _m."""

    search: SearchSettings = SearchSettings()
    verifier: VerifierWeights = VerifierWeights()
    verify_points: int = 400  # points per direction the verifier projects
    tree_points: int = 3000  # query points in the ICP target tree
    refine_top_k: int = 5  # 3 candidates and 5 iterations: refinement 58 -> 29 ms, but validation ADD(-S) 0.760 -> 0.738
    # (two seeds of 210 queries; docs/benchmarks.md, "The global search, faster"): accuracy first
    refine_points: int = 800
    refine_thresholds: tuple[float, ...] = (0.05, 0.025)
    refine_iterations: int = 8
    sweep_top_k: int = 0  # spin sweep: the best few hypotheses turned about the reference's principal axes
    sweep_angles: int = 12  # ... in this many steps per axis (0 or top_k 0 = off)
    sweep_points: int = 300
    sweep_iterations: int = 4
    refine_colour_weight: float = 0.2  # coloured-ICP feature scale in refinement, x diameter (0 = off)
    track_min_confidence: float = 0.35  # below this the tracked pose is not trusted: global search
    search_min_confidence: float | None = None  # a global search's winner found without a segmenter's mask (a
    # predicted silhouette, a lost object's search region) must reach this confidence (its appearance: as a tracked
    # pose's); None = the backend's own bar (Backend.search_min_confidence: 0.5 learned, 0.35 classic; docs/tracking.md)
    track_points: int = 800  # tracking refines its best starts like the global refinement (400 points and 5
    track_iterations: int = 8  # iterations lost 0.12 / 0.07 at 30-60 / 60-90 deg from the reference, same mean time)
    track_velocity: bool = True  # tracking starts also from the last pose moved by the last frame's motion (paired,
    # 1,040 object-frames, masks on the reference only: ADD 0.612 -> 0.663, no bin lower; every frame 0.666 -> 0.688)
    track_network_every: int = 2  # on every this-many-th tracked frame of an object, tracking starts also from the
    # backend's anchored hypotheses (the learned backend's RANSAC on its ROC: from the reference, not the last pose;
    # 0 = never); one wins only where its appearance is at least the best tracked candidate's. Every other frame kept
    # what every frame gained for half its time (docs/tracking.md, "Starts from the reference")
    track_min_appearance: float = 0.25  # a tracked winner whose appearance score (shrunk ZNCC) is below this is not
    # trusted either: the global search takes the frame (0 = off). Among tracked poses it tells right from wrong far
    # better than the confidence (AUROC 0.88 vs 0.69): confident wrong poses 113 -> 43 (classic), 200 -> 140 (auto).
    # 0.3 with the appearance window 0.15; the narrower window (shading out) scores right poses a little lower
    texture_min_std: float = 6.0  # a reference whose grey levels vary less than this (0-255) over its pixels has no
    # texture to check: without a mask its poses are trusted on the confidence alone (with a mask nothing changes:
    # paired on 1,032 object-frames of plain objects, trusting them there lost 0.011 ADD and added 27 confident wrong)
    track_turn_deg: float = 15.0  # tracking starts: the last pose, and turned by +- this about C's principal axes
    # (0 = the last pose alone); refined and chosen like a global search's candidates (verifier, the backend's term,
    # appearance, margin), since the last pose alone slid along near-symmetric surfaces (docs/tracking.md)
    track_spin_deg: float = 20.0  # tracking's winner turned about the reference's axis of revolution within +- this, in
    track_spin_step_deg: float = 2.5  # ... steps of this; verifier + appearance keep the best (0 = off; docs/tracking.md)
    track_slide: float = 0.0  # ... and slid along that axis by +-1/3, 2/3, 1 x this x diameter (0 = off: measured, not
    # taken: seed 3 ADD 0.699 -> 0.713, seed 5 0.773 -> 0.768 with 30-60 deg lower beyond its interval; docs/tracking.md)
    track_sphere_max_residual: float = 0.2  # a reference whose visible surface is a piece of a sphere (its normal lines
    # within this x scale of one point: a bowl's outside) and has texture: tracking's winner is turned about that
    # point by a pattern search (steps below), appearance alone choosing, the verifier a guard. Its fitted axis of
    # revolution is arbitrary there, so the spins above missed the turns (0 = off; docs/tracking.md, "A bowl turned
    # about its centre")
    track_sphere_steps_deg: tuple[float, ...] = (6.0, 3.0, 1.5)  # ... the search's steps, each about x, y, z
    track_sphere_verifier_slack: float = 0.05  # ... a turn is kept only when its verifier score is at most this below
    # the winner's and its appearance (on every point) above
    track_margin: float = 0.2  # without a mask, the object's pixels are those within this (x diameter; at least
    track_margin_min_m: float = 0.01  # this) of its reference cloud at the last pose: the motion allowed per frame
    search_radii: float = 3.0  # a lost object is searched for within this many radii of where it was last seen
    min_inliers: int = 20  # reference points within the final ICP band of the query surface
    min_confidence: float = 0.05
    inlier_threshold: float = 0.03  # band for inliers/residual, x diameter
    # Appearance decides (appearance.py; docs/benchmarks.md, "Appearance"). appearance_weight and confidence_margin
    # are on (chosen on validation objects by tools/probe_appearance.py, confirmed on two seeds of held-out test
    # objects). Twins (twin_top_k 1) are on since they win only where the texture decides (twin_min_appearance_gain):
    # paired on suite v2 (1,512 queries; docs/validation.md, "Twins decide by texture, or not at all") ADD(-S) 0.696
    # -> 0.715, +0.019 [+0.012, +0.026], 30-60 deg +0.056, no bin or part lower, confident wrong 144 -> 105; on
    # tracking with a mask every frame no bin lower on two seeds, confident wrong fewer. Before that rule they lost a
    # bin there (seed 3 120-180 -0.049 [-0.098, -0.012]): twins won on geometry alone and were mostly wrong.
    twin_top_k: int = 1  # geometric twins of the best few refined candidates (symmetry.twins):
    twin_angles: int = 24  # spins by k*360/twin_angles about the reference's axis of revolution when it has one,
    twin_depth_offset: float = 0.5  # quarter turns and flips about its principal axes through a centre this x scale behind
    twin_points: int = 300  # ... each settled by a short coloured ICP, coarse to fine (a turn about an axis
    twin_thresholds: tuple[float, ...] = (0.2, 0.1, 0.05, 0.025)  # off the object's own starts off its place),
    twin_iterations: int = 2  # ... per threshold; they join the final candidates
    twin_keep: int = 8  # ... the first threshold by table lookup, then only this many, those the verifier and
    # appearance prefer, go on (0 = all, every stage by KD-tree: the twins' 6-D queries were ~90 % of their ~180 ms)
    twin_rank_points: int = 1000  # ... that ranking scores appearance on about this many of the reference's
    # appearance points (every k-th; 0 = all): twins 39-42 -> 28-31 ms; suite v2 every bin and part the same hits,
    # 13 of 1,512 errors moved, confident wrong 5 -> 5 (docs/tracking.md, "The network beside the ICP")
    twin_min_confidence: float = 0.5  # ... a twin joins only with this x the best candidate's verifier confidence
    twin_min_appearance_gain: float = 0.05  # ... and wins only when its appearance (shrunk ZNCC, -1..1) beats the best
    # own candidate's by this; else that candidate wins and the twin stays its rival (-2 = off: the best score wins)
    appearance_weight: float = 0.5  # + weight x shrunk ZNCC of the texture (appearance.py) on the final candidates
    appearance_margin: float = 0.1  # ... only among those whose verifier score is within this of the best
    appearance_points: int = 4000  # reference pixels of the appearance model
    confidence_margin: float = 0.2  # honest confidence: x clip(gap / margin) to the best rival pose (0 = off)
    confidence_appearance: float = 0.7  # the published confidence: the verifier's x clip(appearance / (this x the
    # most this reference can score), 0, 1) for a textured reference (0 = the verifier's alone). Decisions keep the
    # verifier's confidence and the appearance apart (_trusted); the number a client thresholds folds in the texture,
    # which tells right from wrong where the depth cannot (docs/validation.md, "A confidence that sees the texture")
    confidence_rival_deg: float = 15.0  # ... a rival is a final candidate this far in rotation from the winner

    def with_updates(self, **kw) -> "EstimatorSettings":
        """A copy with top-level fields and ``search.*``/``verifier.*`` fields replaced (dotted keys)."""
        top = {k: v for k, v in kw.items() if "." not in k}
        search = {k.split(".", 1)[1]: v for k, v in kw.items() if k.startswith("search.")}
        ver = {k.split(".", 1)[1]: v for k, v in kw.items() if k.startswith("verifier.")}
        return replace(self, search=replace(self.search, **search), verifier=replace(self.verifier, **ver), **top)
