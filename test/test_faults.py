"""Faults a workcell sees, with the node as a separate process over real DDS (the harness):

- kill -9 in the middle of a stream, then a restart: the saved reference is restored and the first pose
  comes soon after the first frame the restarted node can receive (test_ros_restart.py covers the plain
  restore and a file of random bytes; this adds the mid-stream kill and the time to the first pose);
- a truncated or bit-flipped reference file on start: a clear error in the log and /diagnostics, and the
  node runs without a reference;
- a corrupt checkpoint with backend auto: a clear error, the classic fallback, and /diagnostics says so;
- the camera stops: input_age_ms keeps growing, the status turns WARN, and no old pose is published again;
- bad input over the wire that test_ros_node.py does not send (tiny masks, inf/out-of-range depth, bad
  steps, empty images, NaN or negative K, a camera_info of another size, ...), valid variants (bgr8,
  big-endian, padded rows, 32FC1) that must give the same pose, and a burst of random garbage frames.

Timing bounds are ~5x what this 2-core machine measures; the measured figures go to docs/benchmarks.md:
with ONE2ANY_FAULTS_JSON=path set, this module writes them there (tools/make_benchmarks_doc.py does).
The node's inputs are best-effort: a single frame whose answer a test waits for is sent again until the answer
comes (``GraphClient.publish_until``), as a camera would keep sending.
"""
from __future__ import annotations

import json
import os
import threading
import time
import zipfile

import numpy as np
import pytest

from one2any_ros.core.geometry import rotation_angle_deg
from one2any_ros.ros import conversions as conv
from one2any_ros.ros_tools.harness import GraphClient, NodeProcess, frame_messages
from one2any_ros.ros.params import default_reference_path

pytestmark = pytest.mark.slow
ROT_TOL_DEG, TRANS_TOL_MM = 3.0, 5.0  # single frames 1-3 (as in test_ros_node.py)
# streams run over frames 1-9 (up to 60 deg from the reference), where classic measured up to ~2.8 deg / 3 mm
# by global search and a little more when tracking across dropped frames
STREAM_ROT_TOL_DEG, STREAM_TRANS_TOL_MM = 5.0, 10.0
CLASSIC = {"backend": "classic", "max_frame_age_ms": 3000}
RESULTS: dict[str, dict] = {}  # measured figures, written to $ONE2ANY_FAULTS_JSON at the end of the module


@pytest.fixture(scope="module", autouse=True)
def write_results():
    yield
    path = os.environ.get("ONE2ANY_FAULTS_JSON")
    if path and RESULTS:
        RESULTS["measured"] = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu_count": os.cpu_count(),
                               "load_avg_1m": os.getloadavg()[0]}
        with open(path, "w") as f:
            json.dump(RESULTS, f, indent=2, default=float)


@pytest.fixture(scope="module")
def frames():
    from one2any_ros.data.sample import load_sample_sequence

    return load_sample_sequence()["frames"]


@pytest.fixture
def nodes(tmp_path):
    """Start nodes (NodeProcess kwargs); all are stopped at the end of the test."""
    started = []

    def start(**kw):
        p = NodeProcess(log_path=tmp_path / f"node{len(started)}.log", **kw).start()
        started.append(p)
        return p
    yield start
    for p in started:
        p.stop()


@pytest.fixture
def client_factory():
    made = []

    def make(**kw):
        c = GraphClient(**kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def errors(pose_msg, T_gt):
    T = conv.pose_to_matrix(pose_msg.pose)
    return rotation_angle_deg(T[:3, :3].T @ T_gt[:3, :3]), 1000 * np.linalg.norm(T[:3, 3] - T_gt[:3, 3])


def set_reference_on(client, frame, *, T_cam_obj=None, msgs=None):
    """~/set_reference on that frame (GraphClient.set_reference_on: sent after the request, repeated until answered)."""
    return client.set_reference_on(msgs if msgs is not None else frame_messages(frame, time.time_ns()), T_cam_obj=T_cam_obj)


def failure_on(client, msgs, reason: str, *, timeout: float = 10.0, stamps: list[int] | None = None) -> dict | None:
    """Publish ``msgs`` (again every 2 s until answered): the first /diagnostics whose last_failure is ``reason`` for
    one of the stamps sent (GraphClient.failure_of: keyed to this frame, never an earlier frame's or test's)."""
    return client.publish_until_failure(msgs, reason, timeout=timeout, stamps=stamps)


class Streamer:
    """A camera in a thread: sample frames 1..9..2 in a loop (ping-pong: the object turns back and forth and
    never jumps 60 deg), each held for ``hold`` images (6.7 deg per step: 10 Hz, hold 3 = 22 deg/s), fresh
    stamps; remembers stamp -> frame index."""

    def __init__(self, client, frames, rate_hz: float = 10.0, hold: int = 3) -> None:
        self.client, self.frames, self.period, self.hold = client, frames, 1.0 / rate_hz, hold
        self.sent: list[tuple[int, int, float]] = []  # (stamp ns, frame index, monotonic time)
        self._stop = threading.Event()
        self._msgs = {i: frame_messages(frames[i], 0) for i in range(1, len(frames))}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        k, n = 0, len(self.frames) - 1
        order = list(range(1, n + 1)) + list(range(n - 1, 1, -1))
        while not self._stop.is_set():
            i = order[(k // self.hold) % len(order)]
            stamp_ns = time.time_ns()
            msgs = self._msgs[i]
            for m in msgs.values():
                m.header.stamp = conv.ns_to_stamp(stamp_ns)
            self.client.publish(msgs)
            self.sent.append((stamp_ns, i, time.monotonic()))
            k += 1
            self._stop.wait(self.period)

    def start(self) -> "Streamer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def frame_of(self, stamp_ns: int) -> int | None:
        return next((i for s, i, _ in self.sent if s == stamp_ns), None)


def wait_answering(client, full_name: str, timeout: float) -> float | None:
    """monotonic time at which the node's parameter service first answers. (After a kill -9, DDS still lists
    the dead node's endpoints for a while, so service_is_ready() is no sign that the new one is up.)"""
    from rcl_interfaces.srv import GetParameters

    get = client.node.create_client(GetParameters, f"{full_name}/get_parameters")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if client._call(get, GetParameters.Request(names=["backend"]), 1.0).values:
                return time.monotonic()
        except TimeoutError:
            pass
    return None


# --- kill -9 mid-stream, restart --------------------------------------------------------------------------

def test_kill9_mid_stream_then_restart_restores_the_reference_and_resumes_quickly(frames, nodes, client_factory):
    ns = "/faults"
    path = default_reference_path(f"{ns}/one2any")
    path.unlink(missing_ok=True)
    client = client_factory(namespace=ns)
    node = nodes(namespace=ns, params=CLASSIC)
    assert client.wait_ready(60), node.log_text()
    res = set_reference_on(client, frames[0], T_cam_obj=frames[0]["T_cam_obj"])
    assert res.success and path.is_file(), res.message
    saved = path.read_bytes()

    stream = Streamer(client, frames).start()
    try:
        assert client.wait_for(lambda: client.counts["pose"] >= 5, 30), node.log_text()
        node.kill9()  # frames keep coming: one is most likely being processed right now
        t_killed = time.monotonic()
        assert not node.alive() and path.read_bytes() == saved  # the kill left the saved reference alone
        time.sleep(0.5)  # not a wait for an event: the restart comes 0.5 s after the kill, as a supervisor's would
        node2 = nodes(namespace=ns, params=CLASSIC)
        t_ready = wait_answering(client, f"{ns}/one2any", 60)
        assert t_ready is not None, node2.log_text()
        first_frame = client.wait_for(lambda: next((t for _, _, t in stream.sent if t >= t_ready), None), 5)

        def first_new_pose():
            with client.lock:
                times = [t for s, (_, t) in client.poses.items()
                         if any(s == s2 and t2 >= t_ready for s2, _, t2 in stream.sent[-200:])]
            return min(times) if times else None
        t_pose = client.wait_for(first_new_pose, 20)
        assert t_pose is not None, "no pose after the restart: " + node2.log_text()
        n0 = client.counts["pose"]
        assert client.wait_for(lambda: client.counts["pose"] >= n0 + 5, 20)
    finally:
        stream.stop()
    assert "reference restored" in node2.log_text()
    # every pose of the restarted node is right (frame identified by its stamp). The bounds hold where the node keeps
    # up with the stream (the object turns <= 2 sample steps, 13 deg, between two frames it processes); where a loaded
    # machine made it skip more (a restarted node's first frames), tracking starts farther off and may end a few
    # degrees worse (seen once: 5.7 deg): twice the bounds there
    after = sorted((s, p) for s, (p, t) in list(client.poses.items()) if t >= t_ready and stream.frame_of(s))
    idx = [stream.frame_of(s) for s, _ in after]
    errs = [errors(p, frames[i]["T_cam_obj"]) for (_, p), i in zip(after, idx)]
    gaps = [0] + [abs(b - a) for a, b in zip(idx, idx[1:])]  # sample steps (6.7 deg) since the previous pose
    k = [1.0 if g <= 2 else 2.0 for g in gaps]
    assert errs and all(r < f * STREAM_ROT_TOL_DEG and t < f * STREAM_TRANS_TOL_MM for (r, t), f in zip(errs, k)), \
        list(zip(gaps, errs))
    first_pose_s = t_pose - first_frame
    recovery_s = min(t for p, t in client.poses.values() if t > t_killed) - t_killed
    RESULTS["kill9_restart"] = {
        "restart_to_services_up_s": t_ready - t_killed, "first_pose_after_first_frame_s": first_pose_s,
        "kill_to_first_pose_s": recovery_s,
        "poses_after_restart": len(errs), "max_rot_err_deg": max(r for r, _ in errs),
        "max_trans_err_mm": max(t for _, t in errs), "target_s": 2.0}
    print(f"\nrestart: services up {t_ready - t_killed:.1f} s after the kill (restart 0.5 s after it); first pose "
          f"{first_pose_s:.2f} s after the first frame (target 2 s), {recovery_s:.1f} s after the kill")
    assert first_pose_s < 5.0  # target 2 s (measured ~0.5-1 s here); the benchmark doc reports the figure


# --- a damaged reference file on start ----------------------------------------------------------------------

def _damaged_reference(frames, tmp_path, how: str) -> bytes:
    from one2any_ros.core.reference import make_reference, save_reference
    from one2any_ros.core.frame import make_view

    f = frames[0]
    ref = make_reference(make_view(f["rgb"], np.round(f["depth"] * 1000).astype(np.uint16), f["mask"], f["K"]))
    good = tmp_path / "good.zip"
    save_reference(ref, good)
    data = good.read_bytes()
    if how == "truncated":  # a copy or a disk that stopped half way
        return data[: len(data) // 2]
    # one flipped bit in a deflate block header (zlib.error inside zipfile, not BadZipFile)
    info = max(zipfile.ZipFile(good).infolist(), key=lambda i: i.compress_size)
    b = bytearray(data)
    b[info.header_offset + 30 + len(info.filename) + len(info.extra)] ^= 0b10
    return bytes(b)


@pytest.mark.parametrize("how", ["truncated", "bit_flip"])
def test_damaged_reference_file_is_reported_and_the_node_runs_without(frames, nodes, client_factory, tmp_path, how):
    path = tmp_path / "ref.zip"
    path.write_bytes(_damaged_reference(frames, tmp_path, how))
    client = client_factory()
    t_start = time.monotonic()
    node = nodes(params={**CLASSIC, "reference_path": str(path)})
    assert client.wait_ready(60), node.log_text()
    # not a frame's failure: seen after this node started, and naming this test's file (no other test's failure)
    d = client.wait_diagnostics(lambda d: d["last_failure"].startswith("bad_reference_file")
                                and str(path) in d["last_failure"], after=t_start, timeout=30)
    assert d is not None and d["reference"] == "none", (client.diagnostics[-1:], node.log_text())
    log = node.log_text()
    assert "could not restore the reference" in log and "running without one" in log and str(path) in log
    assert failure_on(client, frame_messages(frames[1], time.time_ns()), "no_reference")  # no pose, no crash, says why
    assert node.alive() and client.clear_reference(call_timeout=10).success
    RESULTS.setdefault("damaged_reference", {})[how] = {"last_failure": d["last_failure"][:300], "node_alive": True}


# --- a corrupt checkpoint -----------------------------------------------------------------------------------

def test_corrupt_checkpoint_falls_back_to_classic_and_says_so(frames, nodes, client_factory, tmp_path):
    ckpt = tmp_path / "broken.safetensors"
    ckpt.write_bytes(os.urandom(4096))
    ckpt.with_suffix(".json").write_bytes(b'{"format": "one2any_checkpoint", "version": 1, "sha' + os.urandom(64))
    client = client_factory()
    node = nodes(params={"backend": "auto", "checkpoint": str(ckpt), "max_frame_age_ms": 3000,
                         "reference_path": str(tmp_path / "ref.zip")})
    assert client.wait_ready(90), node.log_text()
    t0 = time.monotonic()
    d = client.wait_diagnostics(timeout=10, after=t0)
    assert d is not None and d["backend"] == "classic", d
    status = next(st for _, t, st in reversed(client.diagnostics) if t >= t0)
    assert "one2any unavailable" in status.message and "using classic" in status.message, status.message
    assert "broken" in status.message  # names the file
    log = node.log_text()
    assert "one2any unavailable" in log and "broken" in log
    # it works as classic, and it refuses a switch to the learned backend it cannot load
    assert set_reference_on(client, frames[0], T_cam_obj=frames[0]["T_cam_obj"]).success
    stamp, pose = client.publish_until_pose(frame_messages(frames[1], time.time_ns()), timeout=30)
    assert pose is not None
    rot, trans = errors(pose, frames[1]["T_cam_obj"])
    assert rot < ROT_TOL_DEG and trans < TRANS_TOL_MM
    r = client.set_parameters(backend="one2any")[0]
    assert not r.successful and "broken" in r.reason, r.reason
    assert client.wait_for(lambda: client.estimates.get(stamp), 5)[0].backend == "classic"
    RESULTS["corrupt_checkpoint"] = {"diagnostics_message": status.message[:300], "backend": d["backend"],
                                     "switch_to_one2any_rejected": r.reason[:200]}


# --- the camera stops ------------------------------------------------------------------------------------

def test_camera_stops_input_age_grows_and_no_old_pose_is_published_again(frames, nodes, client_factory, tmp_path):
    client = client_factory()
    node = nodes(params={**CLASSIC, "reference_path": str(tmp_path / "ref.zip")})
    assert client.wait_ready(60), node.log_text()
    assert set_reference_on(client, frames[0], T_cam_obj=frames[0]["T_cam_obj"]).success
    stream = Streamer(client, frames, rate_hz=5.0).start()
    assert client.wait_for(lambda: client.counts["pose"] >= 5, 30), node.log_text()
    d = client.wait_diagnostics(lambda d: d["input_age_ms"] != "", timeout=5)
    live_age = float(d["input_age_ms"])
    stream.stop()
    # the poses of the frames already sent (the node may still be working on the last one on a loaded machine): it is
    # done with all of them once it has published the pose of a later frame (frames are taken in stamp order, and
    # one writer's poses arrive in the order sent). That last frame: the stream's last image again, so it is tracked
    last: list[int] = []
    assert client.publish_until_pose(frame_messages(frames[stream.sent[-1][1]], time.time_ns()), timeout=30,
                                     stamps=last)[1] is not None, node.log_text()[-3000:]
    n_poses = client.counts["pose"]
    t_quiet = time.monotonic()
    ages = []
    while time.monotonic() - t_quiet < 3.5:
        d = client.wait_diagnostics(after=time.monotonic(), timeout=3)
        assert d is not None
        ages.append(float(d["input_age_ms"]))
    status = client.diagnostics[-1][2]
    assert client.counts["pose"] == n_poses, "a pose was published after the input stopped"
    assert all(b > a for a, b in zip(ages, ages[1:])) and ages[-1] > 2500, ages
    assert status.level == status.WARN and "stale" in status.message, status.message
    sent = {s for s, _, _ in stream.sent} | set(last)
    streamed = {s for s in client.poses if s >= stream.sent[0][0]}  # (not the reference frame's pose)
    assert streamed <= sent  # every pose belongs to a frame that was sent, once (keys are stamps)
    assert client.counts["pose"] == len(client.poses)
    RESULTS["camera_stops"] = {"input_age_ms_while_streaming": live_age, "input_age_ms_after_stop": ages,
                               "poses_after_stop": client.counts["pose"] - n_poses, "status": status.message}


# --- bad input over the wire (beyond test_ros_node.py) -----------------------------------------------------

@pytest.fixture(scope="module")
def wire(frames, tmp_path_factory):
    """One node with a reference on frame 0 (ground-truth pose) for the wire tests. In a namespace of its own: it
    lives as long as the module's tests, and the other tests' nodes (default name /one2any) must not meet it."""
    tmp = tmp_path_factory.mktemp("wire")
    node = NodeProcess(namespace="/wire", params={**CLASSIC, "reference_path": str(tmp / "ref.zip")},
                       log_path=tmp / "node.log").start()
    client = GraphClient(namespace="/wire")
    try:
        assert client.wait_ready(60), node.log_text()
        assert set_reference_on(client, frames[0], T_cam_obj=frames[0]["T_cam_obj"]).success
        yield client, node
    finally:
        client.close()
        node.stop()
    assert "internal error" not in node.log_text(), node.log_text()[-3000:]


def _variant(frames, kind: str) -> dict:
    f = dict(frames[1])
    stamp = time.time_ns()
    if kind in ("tiny_mask_1", "tiny_mask_3"):
        m = np.zeros_like(f["mask"])
        ys, xs = np.nonzero(f["mask"])
        for j in range(int(kind[-1])):
            m[ys[j * 50], xs[j * 50]] = 1
        f["mask"] = m
    elif kind == "inf_depth":
        f["depth"] = np.where(f["mask"] > 0, np.inf, f["depth"]).astype(np.float32)
    elif kind == "far_depth":
        f["depth"] = np.where(f["mask"] > 0, 9.0, f["depth"]).astype(np.float32)  # beyond max_depth (4 m)
    msgs = frame_messages(f, stamp, depth_encoding="32FC1" if kind in ("inf_depth", "far_depth", "f32") else "16UC1")
    if kind == "bad_step":
        msgs["rgb"].step = msgs["rgb"].step - 1
    elif kind == "empty_image":
        msgs["mask"].height, msgs["mask"].width, msgs["mask"].step, msgs["mask"].data = 0, 0, 0, b""
    elif kind == "nan_K":
        msgs["camera_info"].k = [float("nan")] + list(msgs["camera_info"].k)[1:]
    elif kind == "negative_f":
        k = list(msgs["camera_info"].k)
        k[0] = -k[0]
        msgs["camera_info"].k = k
    elif kind == "info_size":
        msgs["camera_info"].width, msgs["camera_info"].height = 1280, 720
    elif kind == "huge_header":  # claims 65535x65535 with 900 KB of data
        msgs["depth"].height = msgs["depth"].width = 65535
        msgs["depth"].step = 2 * 65535
    elif kind == "bgr8":
        msgs["rgb"] = conv.array_to_image(np.ascontiguousarray(f["rgb"][..., ::-1]), "bgr8",
                                          stamp=msgs["rgb"].header.stamp)
        msgs["rgb"].encoding = "bgr8"
    elif kind == "big_endian":
        d = msgs["depth"]
        d.data = np.frombuffer(bytes(d.data), "<u2").astype(">u2").tobytes()
        d.is_bigendian = 1
    elif kind == "padded":
        for k in ("rgb", "depth", "mask"):
            m = msgs[k]
            rows = np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.step)
            m.data = np.concatenate([rows, np.full((m.height, 8), 7, np.uint8)], axis=1).tobytes()
            m.step += 8
    return msgs


# each case's reason is matched for the stamps it sent (failure_on): in any order, under -k, repeated reasons too
WIRE_FAILURES = [
    ("tiny_mask_1", "tiny_mask"), ("inf_depth", "no_depth_in_mask"), ("bad_step", "bad_step"),
    ("far_depth", "no_depth_in_mask"), ("empty_image", "empty_image"), ("nan_K", "bad_intrinsics"),
    ("tiny_mask_3", "tiny_mask"), ("info_size", "size_mismatch"), ("negative_f", "bad_intrinsics"),
    ("huge_header", "truncated_image"),
]


@pytest.mark.parametrize("kind, reason", WIRE_FAILURES, ids=[k for k, _ in WIRE_FAILURES])
def test_bad_input_over_the_wire_gives_a_reason(wire, frames, kind, reason):
    client, node = wire
    stamps: list[int] = []
    d = failure_on(client, _variant(frames, kind), reason, stamps=stamps)
    assert d is not None, f"no {reason}; last: {client.diagnostics[-1][0] if client.diagnostics else None}"
    assert not set(stamps) & set(client.poses) and node.alive()
    RESULTS.setdefault("wire_bad_input", {})[kind] = d["last_failure"][:200]


@pytest.mark.parametrize("kind", ["bgr8", "big_endian", "padded", "f32"])
def test_valid_variants_over_the_wire_give_the_same_pose(wire, frames, kind):
    client, _ = wire
    _, pose = client.publish_until_pose(_variant(frames, kind), timeout=30)
    assert pose is not None, client.diagnostics[-1][0] if client.diagnostics else None
    rot, trans = errors(pose, frames[1]["T_cam_obj"])
    assert rot < ROT_TOL_DEG and trans < TRANS_TOL_MM, (rot, trans)


def _garbage(frames, rng) -> dict:
    """A frame broken in 1-3 random ways: encodings, sizes, steps, data length, K, values, stamps."""
    f = dict(frames[int(rng.integers(1, len(frames)))])
    msgs = frame_messages(f, time.time_ns(), depth_encoding=str(rng.choice(["16UC1", "32FC1"])))
    for _ in range(int(rng.integers(1, 4))):
        k = str(rng.choice(["rgb", "depth", "mask"]))
        m = msgs[k]
        what = int(rng.integers(0, 9))
        if what == 0:
            m.encoding = str(rng.choice(["rgba8", "mono16", "32FC1", "8UC3", "bayer_rggb8", "", "16UC1"]))
        elif what == 1:
            m.height, m.width = int(rng.integers(0, 2000)), int(rng.integers(0, 2000))
        elif what == 2:
            m.step = int(rng.integers(0, 1 << 31))
        elif what == 3:
            m.data = bytes(m.data)[: int(rng.integers(0, len(m.data)))]
        elif what == 4:
            m.data = rng.integers(0, 256, len(m.data), dtype=np.uint8).tobytes()  # random values, right size
        elif what == 5:
            msgs["camera_info"].k = rng.choice([0.0, -1.0, 1e-12, 1e12, np.nan, np.inf], 9).tolist()
        elif what == 6:
            m.is_bigendian = 1
        elif what == 7:
            m.header.stamp = conv.ns_to_stamp(time.time_ns() - int(rng.integers(0, 5 * 10**9)))
        else:
            msgs["camera_info"].width = int(rng.integers(0, 4000))
    return msgs


def test_random_garbage_burst_never_breaks_the_node(wire, frames):
    client, node = wire
    rng = np.random.default_rng(6)
    t0 = time.monotonic()
    garbage: list[int] = []
    for _ in range(40):
        msgs = _garbage(frames, rng)
        client.publish(msgs)
        garbage.append(conv.stamp_to_ns(msgs["rgb"].header.stamp))
        time.sleep(0.05)  # paces the burst (20 Hz), waits for nothing
    # then a good frame, newer than all of them: its pose is the proof that the node is through the burst
    _, pose = client.publish_until_pose(frame_messages(frames[2], time.time_ns()), timeout=30)
    assert pose is not None and node.alive()  # after it: a right pose
    assert client.answer_of(garbage), "no garbage frame reached the node's worker"  # the burst was not all lost
    rot, trans = errors(pose, frames[2]["T_cam_obj"])
    assert rot < ROT_TOL_DEG and trans < TRANS_TOL_MM
    with client.lock:
        failures = {d["last_failure"].split(":")[0] for d, t, _ in client.diagnostics if t >= t0}
    assert "internal_error" not in failures, failures
    RESULTS["garbage_burst"] = {"frames": 40, "reasons_seen": sorted(f for f in failures if f), "node_alive": True}


# --- the soak/overload benchmark runs (a smoke test; the real run is `one2any bench --ros`) ---------------

def test_ros_bench_smoke(tmp_path):
    from one2any_ros.ros_tools.bench.report import format_report
    from one2any_ros.ros_tools.bench.soak import run_ros_bench

    r = run_ros_bench(backend="classic", duration=2.0, calibration_s=3.0, out_dir=tmp_path, verbose=False)
    assert r["node_alive"] and (tmp_path / "ros_bench.json").is_file()
    assert [p["name"] for p in r["phases"]] == ["30 Hz", "4x processing rate"]
    for p in r["phases"]:
        assert p["frames_sent"] > 0 and p["services_ms"]["set_parameters"]["n"] >= 1
        assert p["memory_mb"]["start"] > 0
    assert set(r["targets"]) == {"p99_latency_under_3x_processing", "memory_growth_under_50mb",
                                 "clear_reference_and_parameters_under_200ms"}
    assert "memory growth" in format_report(r)
