"""What the bench measures with while the node runs: the node's memory and CPU (MemorySampler), the calls a cell
controller makes (Prober) and the ground truth of every pose (Truth)."""
from __future__ import annotations

import threading
import time

import numpy as np

from one2any_ros.ros_tools.bench.common import NAMESPACE


class MemorySampler:
    """The node's resident memory (MB) every ``period`` s, from a thread."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []  # (monotonic, MB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.now()
            self._stop.wait(0.5)

    def now(self) -> float:
        """The node's resident memory now (MB), kept as a sample; NaN once the node has exited."""
        try:
            mb = self.proc.memory_info().rss / 2**20
        except Exception:  # the node exited
            return float("nan")
        self.samples.append((time.monotonic(), mb))
        return mb

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the node has used so far."""
        try:
            t = self.proc.cpu_times()
            return t.user + t.system
        except Exception:
            return float("nan")

    def between(self, t0: float, t1: float) -> list[float]:
        """The samples (MB) taken between monotonic times ``t0`` and ``t1``."""
        return [mb for t, mb in self.samples if t0 <= t <= t1]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


class Prober:
    """What a cell controller does while the node runs: every ``period`` s a get_parameters and a
    set_parameters call, and every ``recapture_s`` s a re-capture (``~/clear_reference``, then at once
    ``~/set_reference`` on the latest frame); every round trip is timed."""

    def __init__(self, client, full_name: str, *, period: float = 1.0, recapture_s: float = 10.0) -> None:
        from rcl_interfaces.srv import GetParameters, SetParameters

        self.client, self.period, self.recapture_s = client, period, recapture_s
        self.get_client = client.node.create_client(GetParameters, f"{full_name}/get_parameters")
        self.control_get = client.node.create_client(GetParameters, f"{NAMESPACE}/control/get_parameters")
        self.control_set = client.node.create_client(SetParameters, f"{NAMESPACE}/control/set_parameters")
        self._get_type, self._set_type = GetParameters, SetParameters
        self.calls: list[dict] = []  # {"kind", "t" (monotonic at the answer), "ms", "ok", "message"}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def warm_up(self, timeout: float = 30.0) -> bool:
        """Discover every service once (the first call of a new client includes discovery; not measured)."""
        c = self.client
        return all(cl.wait_for_service(timeout_sec=timeout) for cl in (
            self.get_client, c.param_client, c.set_ref_client, c.clear_ref_client, self.control_get, self.control_set))

    def _timed(self, kind: str, fn) -> None:
        t = time.monotonic()
        try:
            ok, msg = fn()
        except Exception as e:  # a timeout is a result too
            ok, msg = False, repr(e)
        now = time.monotonic()
        self.calls.append({"kind": kind, "t": now, "ms": 1000 * (now - t), "ok": bool(ok), "message": msg})

    def parameters(self) -> None:
        c = self.client
        self._timed("get_parameters", lambda: (bool(c._call(
            self.get_client, self._get_type.Request(names=["min_confidence"]), 10.0).values), ""))
        self._timed("set_parameters",
                    lambda: (c.set_parameters(min_confidence=0.05, call_timeout=10.0)[0].successful, ""))
        from rclpy.parameter import Parameter

        self._timed("control_get_parameters", lambda: (bool(c._call(
            self.control_get, self._get_type.Request(names=["min_confidence"]), 10.0).values), ""))
        self._timed("control_set_parameters", lambda: (c._call(self.control_set, self._set_type.Request(
            parameters=[Parameter("min_confidence", value=0.05).to_parameter_msg()]), 10.0).results[0].successful, ""))

    def recapture(self) -> None:
        c = self.client
        self._timed("clear_reference", lambda: (c.clear_reference(call_timeout=10.0).success, ""))
        self._timed("set_reference", lambda: (lambda r: (r.success, r.message))(
            c.set_reference(use_latest_frame=True, call_timeout=30.0)))

    def _run(self) -> None:
        t0 = time.monotonic()
        k, n_recaptured = 0, 0
        while not self._stop.wait(max(0.0, t0 + (k + 1) * self.period - time.monotonic())):
            k += 1
            self.parameters()
            if time.monotonic() - t0 >= (n_recaptured + 0.5) * self.recapture_s:  # at 5 s, 15 s, 25 s, ...
                n_recaptured += 1
                self.recapture()

    def start(self) -> "Prober":
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(60)


class Truth:
    """Ground truth of every pose: frame k's object pose, and the canonical frame C of a reference taken
    from frame r without an object pose (then O = C: T_cam_C(k) = T_cam_obj(k) inv(T_cam_obj(r)) T_refcam_C(r))."""

    def __init__(self, frames: list[dict]) -> None:
        from one2any_ros.core.reference import make_reference
        from one2any_ros.core.frame import make_view

        self.T_obj = {i: np.asarray(f["T_cam_obj"], float) for i, f in enumerate(frames)}
        self.T_C = {}
        for i, f in enumerate(frames):
            depth = np.round(np.nan_to_num(f["depth"]) * 1000).astype(np.uint16)
            self.T_C[i] = make_reference(make_view(f["rgb"], depth, f["mask"], f["K"])).T_refcam_C
        self.reference: list[tuple[float, int | None]] = []  # (monotonic time set, frame r; None = gt object pose)

    def expected(self, k: int, ref: int | None) -> np.ndarray:
        if ref is None:
            return self.T_obj[k]
        return self.T_obj[k] @ np.linalg.inv(self.T_obj[ref]) @ self.T_C[ref]

    def error(self, T: np.ndarray, k: int, t_recv: float) -> tuple[float, float] | None:
        """(deg, mm) against the reference in effect when the pose arrived, or the one just before or after a
        re-capture (a pose computed on one side of it may arrive on the other); None when unknown."""
        from one2any_ros.core.geometry import rotation_angle_deg

        refs = sorted(self.reference, key=lambda x: x[0])
        i = max((j for j, (t, _) in enumerate(refs) if t <= t_recv), default=None)
        cands = set()
        if i is not None:
            cands.add(refs[i][1])
            if i > 0 and t_recv - refs[i][0] < 1.0:
                cands.add(refs[i - 1][1])
        nxt = (i + 1) if i is not None else 0
        if nxt < len(refs) and refs[nxt][0] - t_recv < 0.5:
            cands.add(refs[nxt][1])
        errs = []
        for r in cands - {-1}:
            G = self.expected(k, r)
            errs.append((float(rotation_angle_deg(T[:3, :3].T @ G[:3, :3])),
                         float(1000 * np.linalg.norm(T[:3, 3] - G[:3, 3]))))
        return min(errs) if errs else None
