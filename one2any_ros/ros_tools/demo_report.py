"""The numbers both ROS demos report: a pose's errors against its ground truth, medians, rates, whether its /tf
came, and the summary line's words."""
from __future__ import annotations

import statistics

import numpy as np


def pose_errors(T: np.ndarray, T_gt: np.ndarray, points: np.ndarray, diameter: float, symmetric: bool) -> dict:
    """One pose against its ground truth: rotation (deg) and translation (mm) errors, ADD (ADD-S for a symmetric
    object, mm) and whether it is within 0.1 of the diameter (the BOP-style recall criterion)."""
    from one2any_ros.core.geometry import rotation_angle_deg
    from one2any_ros.core.metrics import add, add_s
    from one2any_ros.core.protocol import is_hit

    err = (add_s if symmetric else add)(T, T_gt, points)
    return {"rot_err_deg": float(rotation_angle_deg(T[:3, :3].T @ T_gt[:3, :3])),
            "trans_err_mm": float(np.linalg.norm(T[:3, 3] - T_gt[:3, 3]) * 1000), "add_mm": float(err * 1000),
            "add_01d": bool(is_hit(err, diameter))}


def median_of(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(statistics.median(values)) if values else None


def rate_of(times: list[float]) -> float | None:
    """Answers per second between the first and the last."""
    times = sorted(times)
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None


def tf_seen(client, stamp: int, child: str) -> bool:
    from one2any_ros.ros import conversions as conv

    return any(conv.stamp_to_ns(t.header.stamp) == stamp and t.child_frame_id == child for t, _ in client.tfs)



def accuracy_text(s: dict) -> str:
    return (f"ADD(-S)@0.1d {s['add_01d_recall']:.2f}, median {s['median_rot_err_deg'] or 0:.2f} deg / "
            f"{s['median_trans_err_mm'] or 0:.1f} mm")


def rates_text(s: dict) -> str:
    rate = f"{s['pose_rate_hz']:.2f}" if s["pose_rate_hz"] else "-"
    return (f"input {s['input_rate_hz']:.2f} Hz, poses {rate} Hz, dropped {s['dropped_frames']}; "
            f"latency median {s['median_node_latency_ms'] or 0:.0f} ms in the node, "
            f"{s['median_end_to_end_ms'] or 0:.0f} ms end to end")
