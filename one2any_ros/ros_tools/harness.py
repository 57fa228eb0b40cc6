"""A real graph around the node, for the tests and the demo: the node in its own process
(:class:`NodeProcess`) and an rclpy client in this one (:class:`GraphClient`) that publishes frames,
calls the services and collects ~/pose, ~/estimate, /tf and /diagnostics.

Both use the shipped Fast DDS profile (``transport.apply_default_transport``) unless the user chose a
transport: the node tests run with what the package ships (docs/ros.md, *Transport*).

The node reads its inputs best-effort (sensor-data QoS): a frame sent once can be lost (right after discovery,
before the node's readers have matched this writer, or on a loaded machine), and nothing sends it again. A test
that sends one frame and waits for the node's answer sends it with :meth:`GraphClient.publish_until`, which
repeats it until the answer comes.

A frame's failure is checked for that frame's stamp (:meth:`GraphClient.failure_of`,
:meth:`GraphClient.publish_until_failure`), never on the persistent ``last_failure`` alone, which still names an
earlier frame's (or test's) failure after later successes. A check that a frame got no pose first proves that the node
processed it (:meth:`GraphClient.answer_of`, or a later frame's pose: frames are taken in stamp order), so it cannot
pass on a frame that was lost on the way.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger

from one2any_ros.msg import PoseEstimate
from one2any_ros.srv import ListReferences, RemoveReference, SetReference
from one2any_ros.ros import conversions as conv
from one2any_ros.ros.tf import TF_QOS, tf_message_type
from one2any_ros.ros.transport import apply_default_transport, transport_env


def _param_arg(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


class NodeProcess:
    """``python -m one2any_ros.ros.node`` with parameters and remappings; stdout/stderr to ``log_path``."""

    def __init__(self, *, name: str = "one2any", namespace: str = "", params: dict[str, Any] | None = None,
                 remaps: dict[str, str] | None = None, log_path: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, params_files: list[str | os.PathLike] | None = None) -> None:
        """``params_files`` (``--params-file``, in order) come before ``params`` (``-p``) on the command line: rcl
        applies the arguments in order, so ``params`` win over the files, as they do in a launch file."""
        self.args = [sys.executable, "-m", "one2any_ros.ros.node", "--ros-args", "-r", f"__node:={name}"]
        if namespace:
            self.args += ["-r", f"__ns:={namespace}"]
        for k, v in (remaps or {}).items():
            self.args += ["-r", f"{k}:={v}"]
        for f in params_files or ():
            self.args += ["--params-file", str(f)]
        for k, v in (params or {}).items():
            self.args += ["-p", f"{k}:={_param_arg(v)}"]
        self.log_path = Path(log_path) if log_path else None
        self.env = transport_env(env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> "NodeProcess":
        if self.log_path:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=self._log or subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGINT (clean shutdown), then SIGTERM, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                continue
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def __enter__(self) -> "NodeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def frame_messages(frame: dict, stamp_ns: int, *, frame_id: str = "camera_color_optical_frame",
                   depth_encoding: str = "16UC1") -> dict[str, Any]:
    """rgb8 / 16UC1 (mm) or 32FC1 (m) / mono8 / CameraInfo messages of a sample frame ({rgb, depth (m), mask, K}).
    A frame with ``labels`` (a uint8 or uint16 label image) sends that as the mask (mono8 / mono16) instead."""
    stamp = conv.ns_to_stamp(stamp_ns)
    depth = np.asarray(frame["depth"], np.float32)
    if depth_encoding == "16UC1":
        depth = np.round(np.nan_to_num(depth) * 1000.0).astype(np.uint16)
    labels = frame.get("labels")
    if labels is not None:
        mask = np.asarray(labels)
        mask_encoding = "mono16" if mask.dtype == np.uint16 else "mono8"
    else:
        mask, mask_encoding = (np.asarray(frame["mask"]) > 0).astype(np.uint8) * 255, "mono8"
    h, w = depth.shape
    return {
        "rgb": conv.array_to_image(np.asarray(frame["rgb"], np.uint8), "rgb8", stamp=stamp, frame_id=frame_id),
        "depth": conv.array_to_image(depth, depth_encoding, stamp=stamp, frame_id=frame_id),
        "mask": conv.array_to_image(mask, mask_encoding, stamp=stamp, frame_id=frame_id),
        "camera_info": conv.K_to_camera_info(frame["K"], w, h, stamp=stamp, frame_id=frame_id),
    }


class GraphClient:
    """The node's outside world in this process: an rclpy node spun on a background thread."""

    INPUT_TYPES = {"rgb": Image, "depth": Image, "mask": Image, "camera_info": CameraInfo}
    FRAME_WAIT_S = 10.0  # set_reference_on: how long the node waits for the frame (the request's timeout_s)
    REQUEST_RETRY_S = 10.0  # set_reference_on: how long past its frame wait a request may go unanswered before a retry
    RESEND_S = 10.0  # an idempotent service (clear, list, parameters) unanswered this long is asked again (``_call``)

    def __init__(self, node_name: str = "one2any", namespace: str = "", *, client_name: str = "one2any_client",
                 input_qos: QoSProfile | None = None, inputs: bool = True) -> None:
        """``inputs``: publishers on the node's (unremapped) input topics; False when frames come from elsewhere."""
        apply_default_transport()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(client_name, context=self.context)
        ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
        self.full_name = f"{ns}/{node_name}"
        qos = input_qos or QoSProfile(depth=10)  # the node's inputs are relative names in its namespace
        self.pubs = {k: self.node.create_publisher(t, f"{ns}/{k}", qos) for k, t in self.INPUT_TYPES.items() if inputs}
        self.lock = threading.Lock()
        self.poses: dict[int, tuple[PoseStamped, float]] = {}
        self.estimates: dict[int, tuple[PoseEstimate, float]] = {}
        self.tfs: list[tuple[Any, float]] = []
        self.diagnostics: list[tuple[dict[str, str], float, Any]] = []
        self.debug_images: list[Image] = []
        self.object_estimates: dict[tuple[int, str], PoseEstimate] = {}  # (stamp, object_id) -> estimate
        self.detections: dict[int, Any] = {}  # stamp -> Detection3DArray
        self.object_diagnostics: dict[str, dict[str, str]] = {}  # per-object status name -> its newest values
        self.counts: dict[str, int] = defaultdict(int)
        self.node.create_subscription(PoseStamped, f"{self.full_name}/pose", self._rec("pose", self.poses), 50)
        self.node.create_subscription(PoseEstimate, f"{self.full_name}/estimate", self._rec("estimate", self.estimates), 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.node.create_subscription(Image, f"{self.full_name}/debug_image", self._on_debug, 5)
        self.node.create_subscription(PoseEstimate, f"{self.full_name}/estimate", self._on_estimate, 50)
        try:
            from vision_msgs.msg import Detection3DArray

            self.node.create_subscription(Detection3DArray, f"{self.full_name}/detections",
                                          self._rec("detections", self.detections), 50)
        except ImportError:
            pass
        tf_type = tf_message_type()
        if tf_type is not None:
            self.node.create_subscription(tf_type, "/tf", self._on_tf, TF_QOS)
        self.set_ref_client = self.node.create_client(SetReference, f"{self.full_name}/set_reference")
        self.clear_ref_client = self.node.create_client(Trigger, f"{self.full_name}/clear_reference")
        self.remove_ref_client = self.node.create_client(RemoveReference, f"{self.full_name}/remove_reference")
        self.list_ref_client = self.node.create_client(ListReferences, f"{self.full_name}/list_references")
        self.param_client = self.node.create_client(SetParameters, f"{self.full_name}/set_parameters")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # shutdown while spinning
            pass

    def _rec(self, key: str, store: dict):
        def cb(msg) -> None:
            with self.lock:
                store[conv.stamp_to_ns(msg.header.stamp)] = (msg, time.monotonic())
                self.counts[key] += 1
        return cb

    def _on_tf(self, msg) -> None:
        with self.lock:
            for t in msg.transforms:
                self.tfs.append((t, time.monotonic()))
            self.counts["tf"] += 1

    def _on_estimate(self, msg: PoseEstimate) -> None:
        with self.lock:
            self.object_estimates[(conv.stamp_to_ns(msg.header.stamp), msg.object_id)] = msg

    def _on_debug(self, msg: Image) -> None:
        with self.lock:
            self.debug_images = self.debug_images[-4:] + [msg]

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name == self.full_name:
                with self.lock:
                    self.diagnostics.append(({kv.key: kv.value for kv in st.values}, time.monotonic(), st))
            elif st.name.startswith(self.full_name + "/"):
                with self.lock:
                    self.object_diagnostics[st.name] = {kv.key: kv.value for kv in st.values}

    # --- waiting --------------------------------------------------------------------------------------
    @staticmethod
    def wait_for(predicate: Callable[[], Any], timeout: float, period: float = 0.02) -> Any:
        end = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() > end:
                return value
            time.sleep(period)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """The node's services are up and it subscribes to every input."""
        def ready() -> bool:
            return (self.set_ref_client.service_is_ready() and self.clear_ref_client.service_is_ready()
                    and all(p.get_subscription_count() > 0 for p in self.pubs.values()))
        return bool(self.wait_for(ready, timeout))

    def wait_pose(self, stamp_ns: int, timeout: float = 10.0) -> PoseStamped | None:
        got = self.wait_for(lambda: self.poses.get(stamp_ns), timeout)
        return got[0] if got else None

    def wait_diagnostics(self, predicate: Callable[[dict], bool] = lambda d: True, *, after: float | None = None,
                         timeout: float = 5.0) -> dict | None:
        """The first /diagnostics values received after ``after`` (monotonic; default now) that satisfy ``predicate``."""
        after = time.monotonic() if after is None else after

        def find():
            with self.lock:
                return next((d for d, t, _ in self.diagnostics if t >= after and predicate(d)), None)
        return self.wait_for(find, timeout)

    def failure_of(self, stamps: list[int], reason: str) -> dict | None:
        """The first /diagnostics values whose ``last_failure`` is ``reason`` for one of the frames ``stamps`` (the
        node names the frame's stamp in a frame's failure text: ``reason: frame stamped <s.nnnnnnnnn> s...``), or None.
        Keyed to the frame, not to the persistent ``last_failure``: an earlier frame's (or test's) failure of the same
        reason never matches."""
        keys = tuple(f"{reason}: frame stamped {conv.stamp_text(s)} s" for s in stamps)
        with self.lock:
            return next((d for d, _, _ in self.diagnostics if d["last_failure"].startswith(keys)), None)

    def answer_of(self, stamps: list[int]) -> tuple[int, str] | None:
        """The first of the frames ``stamps`` the node has answered: (stamp, "pose") when a ~/pose, ~/estimate or
        ~/detections came for it, (stamp, its last_failure) when /diagnostics named it in a failure of any reason;
        None while none is. Proof that the node processed that frame (it was not lost on the way) and, since frames
        are taken in stamp order, is done with every older frame it received."""
        with self.lock:
            for s in stamps:
                if s in self.poses or s in self.estimates or s in self.detections:
                    return s, "pose"
            keys = tuple(f"frame stamped {conv.stamp_text(s)} s" for s in stamps)
            for d, _, _ in self.diagnostics:
                text = d["last_failure"].partition(": ")[2]
                if text.startswith(keys):
                    return next(s for s, k in zip(stamps, keys) if text.startswith(k)), d["last_failure"]
        return None

    def publish_until_failure(self, msgs: dict[str, Any], reason: str, *, timeout: float = 30.0,
                              stamps: list[int] | None = None) -> dict | None:
        """``publish_until`` /diagnostics says ``reason`` for one of the stamps sent (:meth:`failure_of`): its values,
        or None."""
        return self.publish_until(msgs, lambda sent: self.failure_of(sent, reason), timeout=timeout, stamps=stamps)

    # --- acting ---------------------------------------------------------------------------------------
    def publish(self, msgs: dict[str, Any]) -> None:
        for k in ("camera_info", "mask", "depth", "rgb"):
            if msgs.get(k) is not None:
                self.pubs[k].publish(msgs[k])

    def publish_frame(self, frame: dict, stamp_ns: int, **kw) -> dict[str, Any]:
        msgs = frame_messages(frame, stamp_ns, **kw)
        self.publish(msgs)
        return msgs

    def publish_until(self, msgs: dict[str, Any], answer: Callable[[list[int]], Any], *, timeout: float = 30.0,
                      repeat_s: float = 2.0, stamps: list[int] | None = None, since_ns: int | None = None) -> Any:
        """Publish the frame ``msgs`` now and again every ``repeat_s`` until ``answer(sent)`` is truthy, or
        ``timeout`` s have passed; returns answer's last value. ``sent``: the rgb stamps (ns) this call has sent so
        far, oldest first; a list passed as ``stamps`` gets them appended too.

        Each send carries the stamps of ``msgs`` shifted by the wall time since ``since_ns`` (default: the first
        send; a caller that waits between making the frame and this call passes the time it made it): a good frame
        stays fresh (``max_frame_age_ms``), one made stale on purpose stays as old, stamps that differ on purpose
        between the messages keep their differences, and the node never gets one stamp twice (at most one pose per
        stamp). The messages' own stamps are restored before returning."""
        sent: list[int] = []
        present = {k: m for k, m in msgs.items() if m is not None}
        original = {k: conv.stamp_to_ns(m.header.stamp) for k, m in present.items()}
        key = "rgb" if "rgb" in present else next(iter(present))
        deadline = time.monotonic() + timeout
        t_first = time.time_ns() if since_ns is None else int(since_ns)
        try:
            while True:
                shift = time.time_ns() - t_first if sent or since_ns is not None else 0
                for k, m in present.items():
                    m.header.stamp = conv.ns_to_stamp(original[k] + shift)
                self.publish(msgs)
                sent.append(original[key] + shift)
                if stamps is not None:
                    stamps.append(sent[-1])
                value = self.wait_for(lambda: answer(sent), max(0.0, min(repeat_s, deadline - time.monotonic())))
                if value or time.monotonic() >= deadline:
                    return value
        finally:
            for k, m in present.items():
                m.header.stamp = conv.ns_to_stamp(original[k])

    def publish_until_pose(self, msgs: dict[str, Any], *, timeout: float = 30.0, repeat_s: float = 2.0,
                           stamps: list[int] | None = None) -> tuple[int, PoseStamped] | tuple[None, None]:
        """``publish_until`` a ~/pose comes for one of the stamps sent: (that stamp, the pose), or (None, None)."""
        def pose(sent: list[int]):
            with self.lock:
                return next(((s, self.poses[s][0]) for s in sent if s in self.poses), None)
        return self.publish_until(msgs, pose, timeout=timeout, repeat_s=repeat_s, stamps=stamps) or (None, None)

    def _call(self, client, request, timeout: float, *, resend_s: float | None = None):
        """The service's answer to ``request`` within ``timeout`` s. ``resend_s`` (idempotent services only): the
        request is sent again when no answer came within that long. A server that has just started may have taken a
        request before its answer could reach this client, and that answer is lost (the discovery race of ros2/rclpy
        issue 1181); a request sent again is answered."""
        if not client.wait_for_service(timeout_sec=min(timeout, 10.0)):
            raise TimeoutError(f"service {client.srv_name} is not available")
        deadline = time.monotonic() + timeout
        while True:
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _: done.set())
            left = deadline - time.monotonic()
            if done.wait(max(0.0, min(left, resend_s or left))):
                return future.result()
            client.remove_pending_request(future)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"service {client.srv_name} did not answer within {timeout:.1f} s")

    @staticmethod
    def set_reference_request(*, object_id: str = "", mask_label: int = 0, use_latest_frame: bool = False,
                              timeout_s: float = 0.0, T_cam_obj: np.ndarray | None = None,
                              roi: tuple[int, int, int, int] | None = None) -> SetReference.Request:
        """A ~/set_reference request; ``roi``: (x_offset, y_offset, width, height) of a box around the object."""
        req = SetReference.Request(object_id=object_id, mask_label=int(mask_label), use_latest_frame=use_latest_frame,
                                   timeout_s=float(timeout_s))
        if T_cam_obj is not None:
            req.has_object_pose, req.object_pose = True, conv.matrix_to_pose(T_cam_obj)
        if roi is not None:
            req.roi.x_offset, req.roi.y_offset, req.roi.width, req.roi.height = (int(v) for v in roi)
        return req

    def set_reference(self, *, use_latest_frame: bool = True, call_timeout: float = 30.0,
                      **kw) -> SetReference.Response:
        """``kw``: the request's fields (set_reference_request)."""
        return self._call(self.set_ref_client, self.set_reference_request(use_latest_frame=use_latest_frame, **kw),
                          call_timeout)

    def set_reference_async(self, **kw):
        return self.set_ref_client.call_async(self.set_reference_request(**kw))

    def set_reference_on(self, msgs: dict[str, Any], *, T_cam_obj: np.ndarray | None = None,
                         call_timeout: float = 30.0, repeat_s: float = 1.0,
                         stamps: list[int] | None = None, object_id: str = "",
                         mask_label: int = 0, roi: tuple[int, int, int, int] | None = None) -> SetReference.Response:
        """~/set_reference waiting for the next frame, then the frame ``msgs`` (no race with frames already sent),
        published again every ``repeat_s`` until the node answers (:meth:`publish_until`: a best-effort frame sent
        right after discovery can be lost before the node's readers have matched this writer, seen once in a
        CI-like run as "nothing arrives"); the node takes the first complete copy. The stamps move on with the wall
        clock from this call on, so the 0.3 s this waits for the request to arrive do not age the frame
        (``max_frame_age_ms``). ``stamps``: as in publish_until.

        A request unanswered ``REQUEST_RETRY_S`` after its own frame wait (``FRAME_WAIT_S``) is asked again (the
        node answers every request within that wait plus one estimate, so it was lost: a service whose request path
        has matched may still drop the reply while its response writer has not yet matched this client's reader,
        seen once in a loaded test run as "did not answer within 60 s")."""
        t_call = time.time_ns()
        deadline = time.monotonic() + call_timeout
        self.set_ref_client.wait_for_service(timeout_sec=min(call_timeout, 10.0))
        while True:
            future = self.set_reference_async(use_latest_frame=False, timeout_s=self.FRAME_WAIT_S,
                                              T_cam_obj=T_cam_obj, object_id=object_id, mask_label=mask_label,
                                              roi=roi)
            time.sleep(0.3)
            attempt_end = min(deadline, time.monotonic() + self.FRAME_WAIT_S + self.REQUEST_RETRY_S)
            self.publish_until(msgs, lambda _: future.done(), timeout=max(0.0, attempt_end - time.monotonic()),
                               repeat_s=repeat_s, stamps=stamps, since_ns=t_call)
            if future.done():
                return future.result()
            self.set_ref_client.remove_pending_request(future)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"set_reference did not answer within {call_timeout:.0f} s")

    def remove_reference(self, object_id: str, call_timeout: float = 30.0) -> RemoveReference.Response:
        return self._call(self.remove_ref_client, RemoveReference.Request(object_id=object_id), call_timeout)

    def list_references(self, call_timeout: float = 30.0) -> ListReferences.Response:
        return self._call(self.list_ref_client, ListReferences.Request(), call_timeout, resend_s=self.RESEND_S)

    def publish_until_estimates(self, msgs: dict[str, Any], object_ids: list[str], *, timeout: float = 30.0,
                                repeat_s: float = 2.0) -> tuple[int, dict[str, PoseEstimate]] | tuple[None, None]:
        """``publish_until`` one stamp sent has a ~/estimate of every object in ``object_ids``: (stamp, {id: estimate})."""
        def done(sent: list[int]):
            with self.lock:
                for st in sent:
                    got = {o: self.object_estimates.get((st, o)) for o in object_ids}
                    if all(got.values()):
                        return st, got
            return None
        return self.publish_until(msgs, done, timeout=timeout, repeat_s=repeat_s) or (None, None)

    def clear_reference(self, call_timeout: float = 30.0) -> Trigger.Response:
        return self._call(self.clear_ref_client, Trigger.Request(), call_timeout, resend_s=self.RESEND_S)

    def set_parameters(self, call_timeout: float = 30.0, **values) -> list:
        """Set the node's parameters (``search__num_start_rotations`` for ``search.num_start_rotations``)."""
        req = SetParameters.Request(parameters=[
            Parameter(k.replace("__", "."), value=v).to_parameter_msg() for k, v in values.items()])
        return list(self._call(self.param_client, req, call_timeout, resend_s=self.RESEND_S).results)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


__all__ = ["NodeProcess", "GraphClient", "frame_messages"]
