"""``one2any eval --sequence``: tracking over BOP-format scenes in frame order, beside one-shot estimation on the same
frames (issue 26). Sequences with occluders and exits: ``one2any render --sequences`` (data/sequences.py).

Per scene, every object gets its reference on the first image where it is seen with visib_fract >= 0.5 (its mask and
ground-truth pose, as ``one2any eval``); the images after the last reference are then played in order to one
``MultiObjectEstimator`` (the node's library, helpers off) as the node gets them: ``--masks reference`` (the default)
gives no mask after the reference, ``every`` a label image of the visible masks with every image. The same images
are also estimated one-shot (the object's visible mask, no last pose) for comparison.

Reported (report.json, sequences.csv, sequence.png):
- tracking's and one-shot's ADD(-S)@0.1d and median errors over the images where the object shows (and the medians
  over the images where both gave a pose), and how well each one's confidence tells right from wrong (AUROC);
- ``published_wrong``: poses published that are wrong (ADD(-S) > 0.1 d, or any pose while the object is out of view),
  their share, and the longest run of consecutive wrong frames of one object;
- ``losses`` (a pose, then none while the object still shows), ``exits`` (the object leaves the view) and the frames
  it took to be right again after each return;
- drift: the median rotation and translation error over the first and the last quarter of each sequence's images.
No ROS here.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from one2any_ros.core import metrics
from one2any_ros.core.errors import One2AnyError
from one2any_ros.core.geometry import rotation_angle_deg
from one2any_ros.data import bop
from one2any_ros.evaluation.plan import REFERENCE_MIN_VISIB, load_eval_model

MASKS = ("reference", "every")


def _labels(scene, im_id: int, obj_ids: list[int]) -> np.ndarray | None:
    """The image's label image: object k of ``obj_ids`` (k+1) where its visible mask is; None without instances."""
    entries = scene.gt.get(im_id, [])
    labels = None
    for idx, g in enumerate(entries):
        if int(g["obj_id"]) in obj_ids:
            m = bop.load_image(scene, im_id, idx)["mask"]
            labels = np.zeros(m.shape, np.uint16) if labels is None else labels
            labels[m] = obj_ids.index(int(g["obj_id"])) + 1
    return labels


def _instance(scene, im_id: int, obj_id: int) -> int | None:
    return next((i for i, g in enumerate(scene.gt.get(im_id, [])) if int(g["obj_id"]) == obj_id), None)


def _visible(scene, im_id: int, idx: int) -> float:
    info = (scene.gt_info or {}).get(im_id) or []
    return float(info[idx].get("visib_fract", 1.0)) if idx < len(info) else 1.0


def evaluate_sequences(root: Path, *, split: str = "test", backend: str = "auto", out_dir: Path,
                       masks: str = "reference", estimator_kwargs: dict | None = None, progress: bool = True) -> dict:
    """Run the module docstring's protocol on every scene of ``root/split``; writes and returns the report."""
    from one2any_ros.core.backends import create_backend

    if masks not in MASKS:
        raise ValueError(f"masks must be one of {MASKS}, got {masks!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    kw = dict(estimator_kwargs or {})
    engine = create_backend(backend, device=kw.get("device", "auto"), checkpoint=kw.get("checkpoint"))
    models_info = bop.load_models_info(root)
    rows: list[dict] = []
    scene_ids = bop.list_scenes(root, split)
    bar = _bar(len(scene_ids), progress)
    for scene_id in scene_ids:
        rows.extend(_evaluate_scene(engine, root, bop.load_scene(root, split, scene_id), scene_id, models_info, masks))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    report = summarize_sequences(rows)
    report.update(dataset=str(root), split=split, backend=engine.name, masks=masks, protocol=__doc__.split("\n\n")[1])
    _write(out_dir, report, rows)
    return report


def _evaluate_scene(engine, root: Path, scene, scene_id: int, models_info: dict, masks: str) -> list[dict]:
    """One sequence: each object's reference is its first well-visible frame; every later frame is tracked
    (all objects at once) and, where the object is present, estimated one-shot for comparison."""
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.frame import decode_frame
    from one2any_ros.core.multi_object import MultiObjectEstimator

    obj_ids = sorted({int(g["obj_id"]) for entries in scene.gt.values() for g in entries})
    refs = {}
    for oid in obj_ids:
        ref = next(((im, i) for im in scene.im_ids if (i := _instance(scene, im, oid)) is not None
                    and _visible(scene, im, i) >= REFERENCE_MIN_VISIB), None)
        if ref is not None:
            refs[oid] = ref
    order = sorted(refs)  # object k of the label images is order[k - 1], as a segmenter's labels
    tracker = MultiObjectEstimator(engine, processes=0)
    oneshot = {}
    for k, oid in enumerate(order, start=1):
        im, idx = refs[oid]
        img = bop.load_image(scene, im, idx)
        f = decode_frame(img["rgb"], img["depth"], _labels(scene, im, order), img["K"])
        tracker.set_reference(str(oid), f, mask_label=k, T_cam_obj=img["T_cam_obj"])
        oneshot[oid] = PoseEstimator(engine, settings=tracker.settings)
        oneshot[oid].set_reference(tracker.get(str(oid)).reference)
    start = max((im for im, _ in refs.values()), default=0)
    models = {oid: load_eval_model(bop, root, oid, models_info) for oid in refs}
    rows: list[dict] = []
    for im_id in [i for i in scene.im_ids if i > start]:
        cam = scene.camera[im_id]
        any_img = bop.load_image(scene, im_id, 0) if scene.gt.get(im_id) else _bare_image(scene, im_id)
        labels = _labels(scene, im_id, order) if masks == "every" else None
        frame = decode_frame(any_img["rgb"], any_img["depth"], labels, np.asarray(cam["cam_K"]).reshape(3, 3))
        results = tracker.estimate_all(frame, mask_mode="when_needed")
        rows.extend(_frame_rows(scene, scene_id, im_id, frame, results, order, models, oneshot))
    tracker.close()
    return rows


def _frame_rows(scene, scene_id: int, im_id: int, frame, results: dict, order: list[int], models: dict,
                oneshot: dict) -> list[dict]:
    """One row per object of one frame: the tracked result scored, and the one-shot one where it is present."""
    rows = []
    for oid in order:
        idx = _instance(scene, im_id, oid)
        gt = bop.pose_from_gt(scene.gt[im_id][idx]) if idx is not None else None
        row = _score(results[str(oid)], gt, models[oid])
        row.update(scene_id=scene_id, obj_id=oid, im_id=im_id, present=gt is not None,
                   visib_fract=_visible(scene, im_id, idx) if idx is not None else 0.0)
        if gt is not None:
            one = bop.load_image(scene, im_id, idx)
            try:
                r1 = oneshot[oid].estimate(frame.view_of(one["mask"]), track=False)
            except One2AnyError as e:
                r1 = e
            one_shot = _score(r1, gt, models[oid])
            row.update({f"oneshot_{k}": one_shot[k]
                        for k in ("right", "published", "confidence", "verifier_confidence", "rot_deg", "mm")})
        rows.append(row)
    return rows


def _bare_image(scene, im_id: int) -> dict:
    """rgb and depth of an image without any instance (every object out of view)."""
    import cv2

    from one2any_ros.data.bop import _find_image

    bgr = cv2.imread(str(_find_image(scene.path, im_id)), cv2.IMREAD_COLOR)
    raw = cv2.imread(str(scene.path / "depth" / f"{im_id:06d}.png"), cv2.IMREAD_UNCHANGED)
    scale = float(scene.camera[im_id].get("depth_scale", 1.0)) / 1000.0
    return {"rgb": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), "depth": raw.astype(np.float32) * np.float32(scale)}


def _score(r: Any, gt: np.ndarray | None, model) -> dict:
    """One object-frame: what was published and how wrong it is (a pose while the object is out of view is wrong)."""
    if isinstance(r, Exception):
        return {"published": False, "right": False, "reason": getattr(r, "reason", type(r).__name__), "mode": "none",
                "rot_deg": None, "mm": None, "confidence": 0.0, "verifier_confidence": 0.0}
    out = {"published": True, "reason": "", "mode": r.mode, "confidence": float(r.confidence),
           "verifier_confidence": float(getattr(r, "verifier_confidence", None) or r.confidence)}
    if gt is None:
        return {**out, "right": False, "rot_deg": None, "mm": None}
    T = r.T_camera_object
    err = metrics.add_s(T, gt, model.pts) if model.symmetric else metrics.add(T, gt, model.pts)
    return {**out, "right": bool(err < 0.1 * model.diameter_m), "rot_deg": float(rotation_angle_deg(T[:3, :3].T @ gt[:3, :3])),
            "mm": float(1000 * np.linalg.norm(T[:3, 3] - gt[:3, 3]))}


def summarize_sequences(rows: list[dict]) -> dict:
    """The report's numbers (module docstring) of the per object-frame rows."""
    seqs: dict[tuple, list[dict]] = {}
    for r in rows:
        seqs.setdefault((r["scene_id"], r["obj_id"]), []).append(r)
    present = [r for r in rows if r["present"]]
    published = [r for r in rows if r["published"]]
    wrong = [r for r in published if not r["right"]]
    longest, losses, exits, reacquire, drift_first, drift_last = 0, 0, 0, [], [], []
    for seq in seqs.values():
        seq.sort(key=lambda r: r["im_id"])
        run, prev, away_since = 0, None, None
        for k, r in enumerate(seq):
            run = run + 1 if r["published"] and not r["right"] else 0
            longest = max(longest, run)
            if prev is not None and prev["published"] and not r["published"] and r["present"]:
                losses += 1
            if prev is not None and prev["present"] and not r["present"]:
                exits += 1
                away_since = k
            if away_since is not None and r["present"] and r["right"]:
                back = next(j for j in range(away_since, len(seq)) if seq[j]["present"])
                reacquire.append(k - back)
                away_since = None
            prev = r
        shown = [r for r in seq if r["present"] and r["rot_deg"] is not None]
        q = max(len(shown) // 4, 1)
        drift_first += shown[:q]
        drift_last += shown[-q:]

    def med(xs, key):
        v = [x[key] for x in xs if x.get(key) is not None]
        return round(float(np.median(v)), 2) if v else None

    both = [r for r in present if r["published"] and r.get("oneshot_published")]
    return {
        "object_frames": len(rows), "object_frames_present": len(present), "sequences": len(seqs),
        "tracking_add_01d": _share(r["right"] for r in present),
        "oneshot_add_01d": _share(r.get("oneshot_right", False) for r in present),
        "tracking_median_rot_deg": med([r for r in present if r["published"]], "rot_deg"),
        "tracking_median_mm": med([r for r in present if r["published"]], "mm"),
        "oneshot_median_rot_deg": med([r for r in present if r.get("oneshot_published")], "oneshot_rot_deg"),
        "oneshot_median_mm": med([r for r in present if r.get("oneshot_published")], "oneshot_mm"),
        "both_published": {"object_frames": len(both),  # the paired medians: frames where both gave a pose
                           "tracking": {"rot_deg": med(both, "rot_deg"), "mm": med(both, "mm")},
                           "oneshot": {"rot_deg": med(both, "oneshot_rot_deg"), "mm": med(both, "oneshot_mm")}},
        # does the confidence tell right from wrong (among published poses of objects in view): tracking's against
        # one-shot's, on one scale (issue 26, item 4); and the verifier's alone, before the texture folds in
        "confidence_auroc": _aurocs(present, "confidence"),
        "verifier_confidence_auroc": _aurocs(present, "verifier_confidence"),
        "published": len(published), "published_wrong": len(wrong),
        "published_wrong_share": round(len(wrong) / len(published), 3) if published else None,
        "published_while_away": sum(1 for r in published if not r["present"]),
        "longest_wrong_run": longest, "losses": losses, "exits": exits,
        "frames_to_reacquire": reacquire, "never_reacquired": exits - len(reacquire),
        "drift": {"first_quarter": {"rot_deg": med(drift_first, "rot_deg"), "mm": med(drift_first, "mm")},
                  "last_quarter": {"rot_deg": med(drift_last, "rot_deg"), "mm": med(drift_last, "mm")}},
    }


def _aurocs(present: list[dict], confidence: str) -> dict[str, float | None]:
    """AUROC of ``confidence`` among the published poses of objects in view: tracking's and one-shot's."""
    return {"tracking": _auroc([r for r in present if r["published"]], confidence, "right"),
            "oneshot": _auroc([r for r in present if r.get("oneshot_published")], f"oneshot_{confidence}",
                              "oneshot_right")}


def _auroc(rows: list[dict], confidence: str, right: str) -> float | None:
    from one2any_ros.core.metrics import confidence_auroc

    a = confidence_auroc([r[confidence] for r in rows], [r[right] for r in rows])
    return None if a is None else round(float(a), 3)


def _share(flags) -> float | None:
    flags = list(flags)
    return round(sum(flags) / len(flags), 3) if flags else None


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="sequences", unit="scene")


def _write(out_dir: Path, report: dict, rows: list[dict]) -> None:
    report["files"] = {"report": "report.json", "rows": "sequences.csv"}
    keys = ["scene_id", "obj_id", "im_id", "present", "visib_fract", "published", "right", "oneshot_right", "mode",
            "reason", "confidence", "rot_deg", "mm", "oneshot_published", "oneshot_confidence", "oneshot_rot_deg",
            "oneshot_mm", "verifier_confidence", "oneshot_verifier_confidence"]
    with open(out_dir / "sequences.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    try:
        plot_sequences(rows, out_dir / "sequence.png")
        report["files"]["plot"] = "sequence.png"
    except ImportError:  # no matplotlib (a bare ROS install): the numbers still stand
        pass
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))


_PLOT_STATES = (  # (state, colour, marker, which rows): the plot's points and its legend
    ("right", "tab:green", "o", lambda r: r["published"] and r["right"]),
    ("published wrong", "tab:red", "o", lambda r: r["published"] and not r["right"]),
    ("no pose", "0.4", "x", lambda r: not r["published"]),
)


def plot_sequences(rows: list[dict], path: Path) -> None:
    """One panel per sequence: the rotation error of each frame (capped at 45 deg) coloured by what was published
    (right, wrong, nothing), the frames where the object was out of view shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seqs: dict[tuple, list[dict]] = {}
    for r in rows:
        seqs.setdefault((r["scene_id"], r["obj_id"]), []).append(r)
    fig, axes = plt.subplots(len(seqs), 1, figsize=(9, 1.6 * len(seqs) + 0.6), sharex=True, squeeze=False)
    for ax, ((scene_id, obj_id), seq) in zip(axes[:, 0], sorted(seqs.items())):
        seq.sort(key=lambda r: r["im_id"])
        for r in seq:
            if not r["present"]:
                ax.axvspan(r["im_id"] - 0.5, r["im_id"] + 0.5, color="0.85", lw=0)
        for state, colour, marker, pick in _PLOT_STATES:
            pts = [(r["im_id"], min(r["rot_deg"], 45.0) if r["rot_deg"] is not None else (45.0 if r["published"] else 0.0))
                   for r in seq if pick(r)]
            if pts:
                ax.scatter(*zip(*pts), s=12, color=colour, label=state, marker=marker)
        ax.set_ylim(-2, 48)
        ax.set_ylabel(f"scene {scene_id}\nobj {obj_id}\nrot err deg", fontsize=7)
    from matplotlib.lines import Line2D  # every state in the legend, whichever panel shows it

    handles = [Line2D([], [], ls="", marker=m, color=c, label=n) for n, c, m, _ in _PLOT_STATES]
    axes[0, 0].legend(handles=handles, loc="upper left", fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("image (grey: the object is out of view)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_sequence_report(r: dict) -> str:
    d, b, a = r["drift"], r["both_published"], r["confidence_auroc"]
    return "\n".join([
        f"sequences: {r['sequences']} ({r['object_frames']} object-frames, {r['object_frames_present']} with the object "
        f"in view), masks: {r['masks']}, backend {r['backend']}",
        f"ADD(-S)@0.1d: tracking {r['tracking_add_01d']}, one-shot on the same frames {r['oneshot_add_01d']}; median "
        f"tracking {r['tracking_median_rot_deg']} deg / {r['tracking_median_mm']} mm, one-shot "
        f"{r['oneshot_median_rot_deg']} deg / {r['oneshot_median_mm']} mm; on the {b['object_frames']} frames both "
        f"gave a pose: {b['tracking']['rot_deg']} / {b['tracking']['mm']} against {b['oneshot']['rot_deg']} / "
        f"{b['oneshot']['mm']}",
        f"confidence AUROC (right vs wrong among published poses): tracking {a['tracking']}, one-shot {a['oneshot']}",
        f"published {r['published']}, wrong {r['published_wrong']} ({r['published_wrong_share']}), while out of view "
        f"{r['published_while_away']}; longest run of wrong frames {r['longest_wrong_run']}",
        f"losses {r['losses']}, exits {r['exits']}, frames to re-acquire after a return {r['frames_to_reacquire']}, "
        f"never re-acquired {r['never_reacquired']}",
        f"drift: first quarter {d['first_quarter']['rot_deg']} deg / {d['first_quarter']['mm']} mm, last quarter "
        f"{d['last_quarter']['rot_deg']} deg / {d['last_quarter']['mm']} mm"])
