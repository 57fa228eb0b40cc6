"""The ``one2any`` node (contract: docs/ros.md): one reference view sets an object; every synchronized
RGB-D + mask frame after it yields each object's pose on ``~/estimate``, ``~/detections`` and ``/tf`` (the
default object ``""`` also on ``~/pose``). Up to ``max_objects`` named objects share one stream: each selects its
pixels of the mask (a label image) by its ``mask_label`` (core/multi_object.py). The node owns the object table
(ros/object_table.py) and hands it to the reference services (ros/references.py; references persist:
core/reference_store.py); its outputs are ros/outputs.py, the masks and boxes that come on their own
ros/cue_input.py.

Concurrency: one SingleThreadedExecutor thread takes every message, service call, parameter change and
timer; one plain worker thread does all estimation (the single-threaded executor keeps up with a fast
camera where rclpy's multi-threaded one does not: the measurement is in docs/ros.md). Between them, the
mailbox (mailbox.py):
- inputs: the synchronizer's callbacks only put the newest complete frame in its one slot (a frame still
  waiting there is replaced and counted as dropped: latest wins), in stamp order (an older set is dropped;
  a jump back of more than STAMP_RESET_S, a bag replayed again, restarts the order: docs/ros.md,
  "Synchronizer");
- the worker takes one frame at a time, and first the jobs services and parameter changes hand it
  (loading another backend runs there, after the parameter callback has answered);
- a watchdog on the diagnostics timer restarts a worker that died (reported ERROR on /diagnostics first);
  the job it was running is answered with the error, so ~/set_reference never hangs;
- ``~/set_reference`` is a coroutine: it hands the worker a job (wait for the next frame, set the
  reference, save it) and awaits its result, so the executor keeps taking frames meanwhile;
  ``~/clear_reference`` answers at once;
- the 1 Hz diagnostics timer and rclpy's parameter services run on the executor thread too.
The estimator is used under the object table's lock (worker, backend swaps), for at most one frame at a time.
``~/clear_reference`` never waits for it: when the lock is busy it leaves a pending clear that the next
holder applies first (the frame in progress then publishes no pose).
"""
from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, Image

from one2any_ros.core.backends import create_backend
from one2any_ros.core.checkpoint_files import DEFAULT_CHECKPOINT, checkpoint_paths, read_description
from one2any_ros.core.errors import InputError, NoReferenceError, One2AnyError
from one2any_ros.core.frame import DEFAULT_OBJECT
from one2any_ros.core.multi_object import MultiObjectEstimator
from one2any_ros.core.reference_store import ReferenceStore
from one2any_ros.ros import conversions as conv
from one2any_ros.ros import params
from one2any_ros.ros.cue_input import CueInputs, boxes_of
from one2any_ros.ros.diagnostics import NodeStats, diagnostic_array, failure_text
from one2any_ros.ros.mailbox import STAMP_RESET_S, Job, Mailbox
from one2any_ros.ros.object_table import ObjectTable
from one2any_ros.ros.outputs import OUT_QOS, PoseOutputs
from one2any_ros.ros.references import ReferenceServices, restore_references
from one2any_ros.ros.sync import Frame, FrameSynchronizer
from one2any_ros.ros.tf import broadcaster_name
from one2any_ros.ros.transport import apply_default_transport

INPUTS = {"rgb": Image, "depth": Image, "camera_info": CameraInfo}  # a frame; mask_mode every_frame adds "mask"
INPUT_WINDOW_S = 2.0  # inputs arriving this long without a complete frame are reported
STALE_INPUT_S = 2.0  # /diagnostics warns when the newest complete frame is older than this (camera stopped)
WORKER_STALL_S = 30.0  # /diagnostics says ERROR when the worker has been on one frame or job this long
SERVICE_SLACK_S = 120.0  # a service's job must be done this long after its own wait (a frame): else worker_timeout
PROMPT_DIAG_MIN_S = 0.1  # a new failure reason goes out on /diagnostics at once, at most this often


class One2AnyNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("one2any", **kwargs)
        self._settings = s = params.declare(self)
        self._stats = NodeStats()
        self._backend_note, self._last_reason = "", ""
        self._diag_lock = threading.Lock()  # /diagnostics is published from the executor and the worker
        self._diag_pub = None
        self._last_prompt_diag = float("-inf")
        self._backend_param = s.backend  # the `backend` value the loaded backend was made from
        self._table = ObjectTable(self._objects_of(s), ReferenceStore(self._reference_path(s)), self.get_logger())
        self._mailbox: Mailbox[Frame] = Mailbox(stamp_reset_s=STAMP_RESET_S, future_factory=Future)
        self._current_job: Job | None = None  # the worker's job in progress
        self._busy_since: float | None = None  # monotonic time the worker took its current frame or job
        self._worker_error = ""  # why the worker died; cleared when the watchdog restarts it
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", OUT_QOS)
        self._outputs = PoseOutputs(self, self._table, self._stats)
        self._backend_note = self._outputs.tf_note or self._backend_note
        restore_references(self._table, self.get_logger(), self._stats)
        self._subscribe(s)
        self._references = ReferenceServices(self, self._table, self._mailbox, callback_group=self._awaiting_group)
        self.create_timer(1.0, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = self._start_worker()
        tf = self._outputs.tf
        self.get_logger().info(
            f"ready: backend {self._table.objects.backend.name}, {len(self._table.listing())} reference(s) "
            f"({self._table.store.path}), synchronizer {self._sync.backend}, "
            f"tf {broadcaster_name(tf) if tf is not None else 'none'}")

    def _objects_of(self, s: params.NodeSettings) -> MultiObjectEstimator:
        """The objects' estimator on the configured backend (classic, said why, when that one is unavailable)."""
        try:
            backend = self._make_backend(s)
        except (One2AnyError, ImportError, ValueError) as e:
            self.fail(getattr(e, "reason", "bad_backend"), f"backend '{s.backend}' unavailable ({e}); using classic",
                      frame=False)
            backend = create_backend("classic")
        return MultiObjectEstimator(backend, settings=s.estimator, max_objects=s.max_objects,
                                    processes=None if s.object_processes < 0 else s.object_processes,
                                    helper_timeout_s=s.helper_timeout_ms / 1000.0)

    def _reference_path(self, s: params.NodeSettings) -> Path:
        return Path(s.reference_path or params.default_reference_path(self.get_fully_qualified_name()))

    def _subscribe(self, s: params.NodeSettings) -> None:
        """The frame's synchronized inputs, and the masks and boxes that come on their own."""
        # ~/set_reference awaits the worker: it must not hold the default (mutually exclusive) group, or the
        # inputs would stop while it waits; the guard condition wakes the executor when a job is done
        self._awaiting_group = ReentrantCallbackGroup()
        self._job_done = self.create_guard_condition(lambda: None, callback_group=self._awaiting_group)
        inputs = dict(INPUTS, mask=Image) if s.mask_mode == "every_frame" else INPUTS
        self._sync = FrameSynchronizer(self, inputs, qos=qos_profile_sensor_data, slop_s=s.sync_slop,
                                       callback=self._on_frame)
        # masks (when_needed) and boxes arrive on their own: the worker matches them to its frame (ros/cue_buffer.py)
        self._cues = CueInputs(self, mask_mode=s.mask_mode)

    @property
    def settings(self) -> params.NodeSettings:
        """The current settings: one frozen snapshot, replaced whole when a parameter changes."""
        return self._settings

    # --- frames: executor thread -> mailbox -> worker thread --------------------------------------------
    def _on_frame(self, msgs: dict) -> None:
        now = self.get_clock().now().nanoseconds
        stamp = conv.stamp_to_ns(msgs["rgb"].header.stamp)
        put = self._mailbox.put_frame(stamp, lambda seq: Frame(msgs, stamp, time.monotonic(), seq))
        for _ in range(put.dropped):
            self._stats.frame_dropped()
        if not put.accepted:  # an older set completed after a newer one: never estimated
            self.get_logger().debug(f"dropped a set stamped {put.back_ns / 1e6:.1f} ms before the last one taken")
            return
        if put.reset:
            self.get_logger().warning(f"input stamps went back {put.back_ns / 1e9:.1f} s (a bag replayed again, "
                                      "or a clock reset): following the new stream")
        self._stats.frame_received((now - stamp) / 1e6 if now > 0 else None, stamp)

    def read_frame(self, frame: Frame, s: params.NodeSettings, *, need_mask_s: float = 0.0) -> tuple[dict, object]:
        """The frame's messages (with its cues: CueInputs.messages) and the decoded frame at the working width
        (``max_image_width``; boxes from either are in the camera's pixels: ``Box.scaled`` by its ``stride``), once its
        age is checked."""
        self._check_age(frame, s)
        msgs = self._cues.messages(frame, s, need_mask_s=need_mask_s)
        return msgs, conv.frame_from_messages(msgs, min_depth=s.min_depth, max_depth=s.max_depth,
                                              max_width=s.max_image_width)

    def _start_worker(self) -> threading.Thread:
        worker = threading.Thread(target=self._worker_main, name="one2any_worker", daemon=True)
        worker.start()
        return worker

    def _worker_main(self) -> None:
        """The worker thread's body: the loop, and if anything escapes it, a report instead of a silent death
        (the job in progress is answered with the error; the watchdog restarts the thread)."""
        try:
            self._work()
        except BaseException as e:  # noqa: BLE001 (whatever killed it is reported, then the thread ends)
            if self._shutting_down():  # Ctrl-C while a frame was being published: nothing died
                return
            self._worker_error = f"{type(e).__name__}: {e}"
            self.get_logger().error(f"the estimation worker died: {traceback.format_exc()}")
            job = self._current_job
            if job is not None and not job.future.done():
                job.future.set_exception(RuntimeError(f"the estimation worker died ({self._worker_error})"))
                self._wake_awaiting()
            self.fail("worker_died", self._worker_error, frame=False)

    def _work(self) -> None:
        """The worker loop: the mailbox hands jobs first (an operator is waiting on them), then the newest frame."""
        while (item := self._mailbox.next()) is not None:
            self._busy_since = time.monotonic()
            if isinstance(item, Job):
                self._current_job = item
                item.run()
                self._current_job = None
                self._wake_awaiting()
            else:
                self._process(item)
            self._busy_since = None

    def _check_worker(self) -> None:
        """The watchdog (diagnostics timer): a worker that died is reported ERROR, then started again."""
        if self._mailbox.stopped or (self._worker.is_alive() and not self._worker_error):
            return
        if not self._worker_error:
            self._worker_error = "the worker thread is not running"
            self.fail("worker_died", self._worker_error, frame=False)
        self._publish_status()  # level ERROR while _worker_error is set
        self._worker.join(timeout=1.0)
        self._stats.worker_restarted()
        self.get_logger().warning(f"restarting the estimation worker (restart {self._stats.worker_restarts})")
        self._worker_error = ""
        self._worker = self._start_worker()

    def _shutting_down(self) -> bool:
        """The node's context is gone (Ctrl-C, rclpy.shutdown): publishing fails from here on, and that is expected."""
        try:
            return not self.context.ok()
        except Exception:  # noqa: BLE001 (a context torn down so far that it cannot say: it is gone)
            return True

    def _wake_awaiting(self) -> None:
        try:
            self._job_done.trigger()
        except Exception:  # the node is being destroyed: nobody is waiting any more
            pass

    def _submit(self, fn: Callable[[], object]) -> Future:
        """Hand ``fn`` to the worker without waiting for it (parameter side effects)."""
        return self._mailbox.submit(fn)

    async def run_on_worker(self, fn: Callable[[], object], *, wait_s: float = 0.0):
        """Run ``fn`` on the worker thread and await its result without blocking the executor, at most ``wait_s`` (the
        job's own waits) + SERVICE_SLACK_S: past that, the caller gets WorkerTimeout (a job not started yet is
        withdrawn; one that is running may still take effect) instead of waiting on a stuck worker for ever."""
        future = self._submit(fn)
        deadline = wait_s + SERVICE_SLACK_S

        def expire() -> None:
            if not future.done():
                withdrawn = self._mailbox.cancel(future)
                future.set_exception(WorkerTimeout(
                    f"the estimation worker did not finish this request within {deadline:.0f} s (stuck: see "
                    "/diagnostics); " + ("it was withdrawn, nothing changed" if withdrawn else
                                         "it is still running and may yet take effect")))

        # steady time: under use_sim_time a bag's /clock jumps (0 -> its stamps) and a ROS-time deadline expired at once
        timer = self.create_timer(deadline, expire, callback_group=self._awaiting_group,
                                  clock=Clock(clock_type=ClockType.STEADY_TIME))
        try:
            return await future
        finally:
            timer.cancel()
            self.destroy_timer(timer)

    def destroy_node(self) -> None:
        self._mailbox.stop()
        self._cues.stop()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(timeout=5.0)
        self._table.objects.close()
        super().destroy_node()

    def _process(self, frame: Frame) -> None:
        """One frame, every object: estimate and publish. Every step, publishing included, is inside the frame's
        error handling: a failure costs this frame its poses, is reported (its text names the frame's stamp), and the
        worker goes on."""
        s = self._settings  # one consistent snapshot for the whole frame
        about = f"frame stamped {conv.stamp_text(frame.stamp_ns)} s"
        try:
            if not self._table.listing():
                raise NoReferenceError("no reference is set: call ~/set_reference")
            msgs, qframe = self.read_frame(frame, s)
            with self._table.estimator() as objs:
                if not len(objs):
                    raise NoReferenceError("no reference is set: call ~/set_reference")
                objs.set_settings(s.estimator)
                results = objs.estimate_all(qframe, track=True, boxes=boxes_of(msgs, objs.object_ids, qframe.stride),
                                            mask_mode=s.mask_mode, instance_labels=s.instance_labels)
                self._table.report_helpers()  # a helper that could not be started again turns them off: said once
                refs = {oid: objs.get(oid).reference for oid in results}
                if self._table.clear_pending:
                    raise NoReferenceError("~/clear_reference came while this frame was processed")
        except One2AnyError as e:
            return self.fail(e.reason, f"{about}: {str(e) or type(e).__name__}")
        except Exception as e:  # a bug must not take the node down: report it and go on
            self.get_logger().error(f"internal error on a frame: {traceback.format_exc()}", throttle_duration_sec=10.0)
            return self.fail("internal_error", f"{about}: {e!r}")
        try:
            self._publish_results(frame, s, qframe, results, refs, about)
        except Exception as e:  # a publisher (or a tf2_ros broadcaster) that raises costs this frame, not the node
            if self._shutting_down():  # the publishers went with the context (Ctrl-C): not a failure to report
                return None
            self.get_logger().error(f"publishing a pose failed: {traceback.format_exc()}", throttle_duration_sec=10.0)
            return self.fail("publish_error", f"{about}: {e!r}")

    def _publish_results(self, frame: Frame, s: params.NodeSettings, qframe, results: dict, refs: dict,
                         about: str) -> None:
        """Each object's failure (``about`` names the frame), then the poses (ros/outputs.py). Failures are recorded
        before poses, so the node's "last frame gave a pose" means: at least one object got one."""
        for oid, r in results.items():
            if isinstance(r, One2AnyError):
                text = str(r) or type(r).__name__
                self._table.object_stats(oid).failure(r.reason, f"{about}: {text}")
                self.fail(r.reason, f"{about}: {text}" if oid == DEFAULT_OBJECT else f"{about}, object '{oid}': {text}")
        self._outputs.publish(frame, s, qframe, results, refs)

    def _check_age(self, frame: Frame, s: params.NodeSettings) -> None:
        """stale_frame: stamped more than max_frame_age_ms before the node's clock; future_stamp: that far after it
        (a camera clock ahead of this one: its poses would be stamped in the future)."""
        now = self.get_clock().now().nanoseconds
        if s.max_frame_age_ms <= 0 or now <= 0:  # off, or sim time before the first /clock
            return
        age_ms = (now - frame.stamp_ns) / 1e6
        if age_ms > s.max_frame_age_ms:
            raise InputError(f"frame is {age_ms:.0f} ms old (max_frame_age_ms = {s.max_frame_age_ms})",
                             reason="stale_frame")
        if -age_ms > s.max_frame_age_ms:
            raise InputError(f"frame is stamped {-age_ms:.0f} ms ahead of the node's clock (max_frame_age_ms = "
                             f"{s.max_frame_age_ms}): are the camera's and this machine's clocks in sync?",
                             reason="future_stamp")

    def fail(self, reason: str, message: str, *, frame: bool = True) -> None:
        """Record a failure; a new kind is logged and published on /diagnostics at once, repeats throttled."""
        text = failure_text(reason, message)
        self._stats.failure(reason, message, frame=frame)
        if reason != self._last_reason:
            self._last_reason = reason
            self.get_logger().warning(text)
            now = time.monotonic()
            if now - self._last_prompt_diag >= PROMPT_DIAG_MIN_S:
                self._last_prompt_diag = now
                self._publish_status()
        else:
            self.get_logger().warning(text, throttle_duration_sec=5.0)

    def input_issue(self) -> str:
        return self._sync.monitor.explain(window_s=INPUT_WINDOW_S, slop_s=self._settings.sync_slop)

    # --- parameters and diagnostics -------------------------------------------------------------------
    def _make_backend(self, s: params.NodeSettings):
        backend = create_backend(s.backend, device=s.device, checkpoint=s.checkpoint or None)
        self._backend_note = getattr(backend, "fallback_reason", "")
        if self._backend_note:
            self.get_logger().warning(self._backend_note)
        return backend

    def _on_set_parameters(self, changed) -> SetParametersResult:
        """Validate and swap the settings; never slow (it runs on the executor thread that takes the camera
        frames). A new backend is checked cheaply here and loaded afterwards on the worker (_swap_backend)."""
        old = self._settings
        try:
            new = params.updated_settings(old, {p.name: p.value for p in changed})
            if new.backend != old.backend:
                _precheck_backend(new)
        except (One2AnyError, ValueError) as e:
            return SetParametersResult(successful=False, reason=str(e))
        if new.sync_slop != old.sync_slop:
            self._sync.set_slop(new.sync_slop)
        self._settings = new  # swapped whole: a frame in flight keeps its snapshot
        if new.backend != old.backend:
            self._submit(lambda: self._swap_backend(new.backend))  # before any frame that comes after this call
        return SetParametersResult(successful=True)

    def _swap_backend(self, name: str) -> None:
        """The worker's half of a `backend` change: load it (may take seconds), re-encode the reference. If it
        cannot be loaded, the failure is reported and the parameter set back to the backend still in use."""
        if name == self._backend_param:
            return  # already in use (e.g. the parameter was set back after a failed load)
        try:
            backend = self._make_backend(replace(self._settings, backend=name))
            with self._table.estimator() as objs:
                objs.set_backend(backend)  # re-encodes every reference for the new backend
        except (One2AnyError, ImportError, ValueError) as e:
            keep = self._backend_param
            self.fail(getattr(e, "reason", "bad_backend"), f"backend '{name}' could not be loaded ({e}); "
                       f"keeping '{keep}'", frame=False)
            self.set_parameters([Parameter("backend", Parameter.Type.STRING, keep)])
            return
        self._backend_param = name
        self.get_logger().info(f"backend now {backend.name}")

    def _publish_diagnostics(self) -> None:
        """The 1 Hz timer: input problems, the worker watchdog, then the status."""
        issue = self._sync.monitor.diagnose(window_s=INPUT_WINDOW_S, slop_s=self._settings.sync_slop)
        if issue:
            self.fail(*issue)
        self._check_worker()
        self._publish_status()

    def _publish_status(self) -> None:
        if self._diag_pub is None:  # a failure while the node is still being built
            return
        backend, s, name = self._table.objects.backend, self._settings, self.get_fully_qualified_name()
        listing = self._table.listing()
        degraded, degraded_objects = self._table.degraded
        status = self._stats.status(name, reference=bool(listing),
                                    backend=backend.name, device=str(getattr(backend, "device", "cpu")),
                                    note=self._backend_note, now_ns=self.get_clock().now().nanoseconds,
                                    stale_ms=1000.0 * STALE_INPUT_S, worker_error=self._worker_error,
                                    worker_stalled=self._stall(),
                                    degraded=degraded)
        per_object = [self._table.object_stats(oid).object_status(f"{name}/{s.child_frame(oid)}",
                                                                  degraded=degraded_objects.get(oid, ""))
                      for oid, _, _ in listing]
        with self._diag_lock:
            self._diag_pub.publish(diagnostic_array([status] + per_object, self.get_clock().now().to_msg()))

    def _stall(self) -> str:
        """Non-empty when the worker has been on one frame or job for WORKER_STALL_S (stuck: a thread cannot be
        killed, so it is reported, ERROR, until it moves on)."""
        since = self._busy_since
        if since is None or time.monotonic() - since < WORKER_STALL_S:
            return ""
        return f"stuck for {time.monotonic() - since:.0f} s on one frame or request"


class WorkerTimeout(One2AnyError):
    """A service's job missed its deadline on the worker."""

    reason = "worker_timeout"


def _precheck_backend(s: params.NodeSettings) -> None:
    """What can be checked of a backend change without loading it: the learned backend's checkpoint JSON
    must be readable (CheckpointError naming the file). Torch-free, so fast enough for the callback."""
    if s.backend == "one2any":
        read_description(checkpoint_paths(s.checkpoint or DEFAULT_CHECKPOINT)[1])


def main(argv: list[str] | None = None) -> int:
    """``one2any_node [--ros-args ...]``; ``argv`` includes the program name (as sys.argv does)."""
    profile = apply_default_transport()  # before rclpy.init: Fast DDS reads it when the participant is created
    # the worker's many short numpy calls hold the GIL in 5 ms slices by default, starving the executor
    # threads that take camera messages in; hand it over more often
    sys.setswitchinterval(0.0005)
    rclpy.init(args=sys.argv if argv is None else argv)
    node = None
    try:
        node = One2AnyNode()
        if profile:
            node.get_logger().info(f"transport: the package's Fast DDS profile {profile} (none was set; "
                                   "FASTDDS_DEFAULT_PROFILES_FILE or FASTDDS_BUILTIN_TRANSPORTS choose another)")
        executor = SingleThreadedExecutor()  # the worker thread does the estimation (module docstring)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001 - Ctrl-C tears the context down under the executor mid-take: quiet then
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
