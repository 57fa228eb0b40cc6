"""Tracking over the wire, as a workcell runs it (issue 26): the node in its own process with the shipped defaults,
this script a client on the same graph. Three unseen (test-split) objects turning back and forth (up to ~7 deg a
frame, within ~50 deg of the reference view) and drifting; a is registered from a mask, b from a box alone (no mask
ever), c from a mask; c leaves the view for 5 frames and returns where it left.

    .venv/bin/python tools/drive_tracking.py [--seed 8]

Run 1, ``reference_only``: masks only with the reference frame, then rgb + depth + camera_info alone. Run 2,
``permuted``: ``instance_labels`` on, a mask every frame whose label values are permuted every frame (a segmenter's
ids). Per run: the share of object-frames with a pose right (ADD < 0.1 d), b's (box only), poses published for c
while it is away (must be 0), the per-object ``state`` in /diagnostics, and whether the node is alive.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

def run(tag: str, objs, frames, out: str, params: dict, *, mask_every: bool, permute: bool, seed: int) -> None:
    """One node, one pass over the frames; prints the run's line."""
    from one2any_ros.core import metrics
    from one2any_ros.data.multi_scene import SIDE_BY_SIDE_AWAY
    from one2any_ros.ros import conversions as conv
    from one2any_ros.ros_tools.harness import GraphClient, NodeProcess, frame_messages

    away = range(*SIDE_BY_SIDE_AWAY)  # frames object c spends out of view

    rng = np.random.default_rng(seed)
    node = NodeProcess(namespace="/cam", params={"object_frame_prefix": "obj_", "max_frame_age_ms": 3000,
                                                 "reference_path": os.path.join(out, tag, "cam.reference.zip"),
                                                 **params}, log_path=os.path.join(out, f"{tag}_node.log")).start()
    cl = GraphClient(namespace="/cam")
    try:
        if not cl.wait_ready(90):
            raise RuntimeError(f"the node did not come up: {out}/{tag}_node.log")
        f0 = frames[0]
        for oid, label in (("a", 1), ("c", 3)):
            r = cl.set_reference_on(frame_messages(f0, time.time_ns()), object_id=oid, mask_label=label,
                                    T_cam_obj=f0["T_cam_obj"][label - 1])
            assert r.success, r.message
        v, u = np.nonzero(f0["labels"] == 2)
        box = (int(u.min()) - 5, int(v.min()) - 5, int(u.max() - u.min()) + 10, int(v.max() - v.min()) + 10)
        msgs = frame_messages(f0, time.time_ns())
        msgs["mask"] = None
        r = cl.set_reference_on(msgs, object_id="b", roi=box, T_cam_obj=f0["T_cam_obj"][1])
        assert r.success, r.message
        hits = {o: [] for o in "abc"}
        for k in range(1, len(frames)):
            f = dict(frames[k])
            if permute:  # a segmenter's ids: other values, another order, every frame
                perm = np.concatenate([[0], rng.permutation(3) + 1 + 3 * rng.integers(0, 5)]).astype(np.uint16)
                f["labels"] = perm[f["labels"]]
            msgs = frame_messages(f, time.time_ns())
            if not mask_every:
                msgs["mask"] = None
            st = cl.publish_until(msgs, lambda sent: next((s for s in sent if s in cl.detections), None), timeout=60)
            time.sleep(0.05)
            with cl.lock:
                got = {o: e for (s, o), e in cl.object_estimates.items() if s == st}
            for i, o in enumerate("abc"):
                e = got.get(o)
                if o == "c" and k in away:
                    hits[o].append("X" if e is not None else "_")
                    continue
                ok = e is not None and metrics.add(conv.pose_to_matrix(e.pose), f["T_cam_obj"][i],
                                                   objs[i].vertices) < 0.1 * objs[i].diameter
                hits[o].append("+" if ok else ("W" if e is not None else "."))
        time.sleep(1.0)
        states = {n.split("/")[-1]: d.get("state") for n, d in cl.object_diagnostics.items()}
        present = [h for o in "abc" for h in hits[o] if h not in "_X"]
        right = present.count("+")
        per_object = ", ".join(f"{o}: {''.join(h)}" for o, h in hits.items())
        print(f"{tag}: right {right}/{len(present)} ({right / len(present):.2f}); per object (+ right, W wrong, "
              f". none, _ away and none, X away and published) {{{per_object}}} | b (box only) "
              f"{hits['b'].count('+')}/{len(hits['b'])} | published while c away {hits['c'].count('X')} | states "
              f"{states} | alive {node.alive()}")
    finally:
        cl.close()
        node.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=8, help="which test objects, which noise and which permutations")
    args = p.parse_args(argv)
    from one2any_ros.data.multi_scene import side_by_side_sequence

    out = tempfile.mkdtemp(prefix="drive_tracking_")
    objs, frames = side_by_side_sequence(args.seed)
    run("reference_only", objs, frames, out, {}, mask_every=False, permute=False, seed=args.seed)
    run("permuted", objs, frames, out, {"instance_labels": True}, mask_every=True, permute=True, seed=args.seed)
    print("node logs:", out)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    sys.exit(main())
