"""The bench's synthetic camera: a process of its own that publishes prebuilt frames (the bundled sample, or a
saved scene) at a fixed rate with fresh stamps, and prints one JSON line of what it published at the end.

It runs as ``python -m one2any_ros.ros_tools.bench.camera SPEC`` with SPEC a ``CameraSpec`` as JSON: a child
entry that the bench itself starts, not a command for people (``one2any bench --ros`` is). It is a process and
not a thread because a camera driver is one: its own interpreter (no GIL shared with the measuring client), its
own DDS participant, its own log."""
from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from one2any_ros.ros_tools.bench.common import FRAME_ID, NAMESPACE, PING_PONG

TOPICS = ("camera_info", "mask", "depth", "rgb")  # in publishing order: the synchronizer's last input is the image


@dataclass(frozen=True)
class CameraSpec:
    """One phase of the camera: ``rate`` Hz for ``duration`` s, each sample frame shown ``hold`` s."""

    rate: float
    duration: float
    hold: float = 0.5  # seconds each sample frame is shown
    namespace: str = NAMESPACE
    wait: float = 15.0  # seconds to wait for the node's subscriptions
    stamps: str | None = None  # write 'stamp_ns frame' lines of every published frame here
    scene: str | None = None  # play this scene (save_scene's .npz) instead of the bundled sample
    masks: bool = True  # False: rgb, depth and camera_info only (no segmenter)
    order: tuple[int, ...] | None = None  # the scene frames in the order shown, round and round (None: PING_PONG)


def save_scene(path: Path, frames: list[dict]) -> Path:
    """A rendered scene (data.multi_scene.multi_object_scene's frames) as one .npz the camera process loads."""
    np.savez(path, rgb=np.stack([f["rgb"] for f in frames]), depth=np.stack([f["depth"] for f in frames]),
             labels=np.stack([f["labels"] for f in frames]), K=np.asarray(frames[0]["K"]),
             T_cam_obj=np.stack([np.stack(f["T_cam_obj"]) for f in frames]))
    return path


def load_scene(path: str | Path) -> list[dict]:
    """save_scene's frames: {rgb, depth (m), labels, K, T_cam_obj (list, one pose per object)}."""
    with np.load(path) as z:
        return [{"rgb": z["rgb"][i], "depth": z["depth"][i], "labels": z["labels"][i], "K": z["K"],
                 "T_cam_obj": list(z["T_cam_obj"][i])} for i in range(len(z["rgb"]))]


def _messages(spec: CameraSpec) -> dict:
    """{sample frame: its messages}, built once before publishing."""
    from one2any_ros.data.sample import load_sample_sequence
    from one2any_ros.ros_tools.harness import frame_messages

    frames = load_scene(spec.scene) if spec.scene else load_sample_sequence()["frames"]
    return {i: frame_messages(frames[i], 0, frame_id=FRAME_ID.format(i)) for i in sorted(set(spec.order or PING_PONG))}


def _publishers(node, spec: CameraSpec) -> dict:
    """{topic key: publisher} under the namespace, after waiting (up to ``spec.wait`` s) for the node's subscriptions."""
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image

    ns = "/" + spec.namespace.strip("/") if spec.namespace.strip("/") else ""
    types = {"rgb": Image, "depth": Image, "camera_info": CameraInfo} if not spec.masks else \
        {"rgb": Image, "depth": Image, "mask": Image, "camera_info": CameraInfo}
    pubs = {k: node.create_publisher(t, f"{ns}/{k}", QoSProfile(depth=10)) for k, t in types.items()}
    end = time.monotonic() + spec.wait
    while time.monotonic() < end and not all(p.get_subscription_count() for p in pubs.values()):
        time.sleep(0.05)
    return pubs


def _play(pubs: dict, msgs: dict, spec: CameraSpec, stop: threading.Event) -> dict:
    """Publish on schedule until ``spec.duration`` s or ``stop``: the result line's numbers and the stamps."""
    from one2any_ros.ros import conversions as conv

    period, n, skipped, publish_ms, stamps = 1.0 / spec.rate, 0, 0, [], []
    order = spec.order or PING_PONG
    t0 = time.monotonic()
    k = 0  # schedule slot
    try:
        while not stop.is_set() and time.monotonic() - t0 < spec.duration:
            now = time.monotonic()
            due = t0 + k * period
            if due > now:
                if stop.wait(due - now):
                    break
            elif now - due > period:  # fell behind (CPU): skip the missed slots instead of bursting
                missed = int((now - due) / period)
                skipped += missed
                k += missed
            i = order[int((time.monotonic() - t0) / spec.hold) % len(order)]
            stamp_ns = time.time_ns()
            stamp = conv.ns_to_stamp(stamp_ns)
            stamps.append((stamp_ns, i))
            m = msgs[i]
            t = time.perf_counter()
            for key in (k for k in TOPICS if k in pubs):
                m[key].header.stamp = stamp
                pubs[key].publish(m[key])
            publish_ms.append(1000 * (time.perf_counter() - t))
            n += 1
            k += 1
    except KeyboardInterrupt:
        pass
    return {"n": n, "elapsed": time.monotonic() - t0, "skipped": skipped, "publish_ms": publish_ms, "stamps": stamps}


def camera_main(spec: CameraSpec) -> int:
    """Publish the frames of ``spec``; print one JSON line (frames published, achieved rate) at the end."""
    from one2any_ros.ros_tools.process_node import process_node

    msgs = _messages(spec)
    with process_node("one2any_bench_camera", ["one2any_bench_camera"]) as node:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        pubs = _publishers(node, spec)
        r = _play(pubs, msgs, spec, stop)
        if spec.stamps:
            Path(spec.stamps).write_text("".join(f"{s} {i}\n" for s, i in r["stamps"]))
        n, elapsed = r["n"], r["elapsed"]
        print(json.dumps({"published": n, "duration_s": elapsed, "rate_hz": n / elapsed if elapsed > 0 else 0.0,
                          "target_rate_hz": spec.rate, "skipped_slots": r["skipped"], "hold_s": spec.hold,
                          "publish_ms_median": statistics.median(r["publish_ms"]) if r["publish_ms"] else None}),
              flush=True)
    return 0


class Camera:
    """The camera process, started for one phase."""

    def __init__(self, rate: float, duration: float, hold: float, log_path: Path, *, scene: Path | None = None,
                 masks: bool = True, order: tuple[int, ...] | None = None) -> None:
        from one2any_ros.ros.transport import transport_env

        self.stamps_path = log_path.with_name(log_path.stem + "_stamps.txt")
        self.stamps_path.unlink(missing_ok=True)
        # rounded as the camera's command line always had them (milliseconds are plenty for a rate and a duration)
        spec = CameraSpec(rate=round(rate, 3), duration=round(duration, 3), hold=round(hold, 3), namespace=NAMESPACE,
                          stamps=str(self.stamps_path), scene=str(scene) if scene else None, masks=masks,
                          order=tuple(order) if order else None)
        self.args = [sys.executable, "-m", "one2any_ros.ros_tools.bench.camera", json.dumps(asdict(spec))]
        env = transport_env()
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=env, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     start_new_session=True)

    def result(self, timeout: float) -> dict:
        """The camera's result line (waiting up to ``timeout`` s, then SIGTERM); an error entry if it gave none."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)
            out, _ = self.proc.communicate(timeout=10)
        self._log.close()
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else {"published": 0, "error": f"camera exited {self.proc.returncode}"}

    def frames(self) -> dict[int, int]:
        """{stamp ns: sample frame} of every frame the camera published."""
        if not self.stamps_path.exists():
            return {}
        return {int(a): int(b) for a, b in (ln.split() for ln in self.stamps_path.read_text().splitlines())}


if __name__ == "__main__":  # the child entry Camera starts (one argument: the spec as JSON)
    sys.exit(camera_main(CameraSpec(**json.loads(sys.argv[1]))))
