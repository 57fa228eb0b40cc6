"""The node's reference services (docs/ros.md, Services): ``~/set_reference``, ``~/remove_reference``,
``~/list_references``, ``~/clear_reference``, and the references restored at start. A part of ``One2AnyNode``
(a mixin: it reads the node's state, ros/node.py declares it), in a file of its own so node.py keeps to frames,
the worker, publishing and parameters.

Threads: set and remove run on the worker (the node's ``_on_worker``), after the frame in progress; list and
clear answer on the executor thread at once (clear never waits for the estimator: see ``_estimator``).
"""
from __future__ import annotations

import math
import traceback
from contextlib import contextmanager

from std_srvs.srv import Trigger

from one2any_ros.core.errors import InputError, One2AnyError
from one2any_ros.core.frame import DEFAULT_OBJECT, validate_object_id
from one2any_ros.ros import conversions as conv
from one2any_ros.ros.sync import Frame
from one2any_ros.srv import ListReferences, RemoveReference, SetReference

REFERENCE_MASK_WAIT_S = 1.0  # ~/set_reference without roi waits this long for its frame's mask or boxes

DEFAULT_WAIT_S = 2.0  # ~/set_reference timeout_s = 0
MAX_WAIT_S = 60.0  # ~/set_reference timeout_s above this is refused (bad_timeout): the worker waits that long at most


def check_set_request(req: SetReference.Request) -> None:
    """Every field of a ~/set_reference request, whether or not this request would use it (a client's bug shows at
    once, not on the day it sets the flag): InputError with the field's reason (docs/ros.md, Failure reasons)."""
    validate_object_id(req.object_id)  # bad_object_id
    timeout = float(req.timeout_s)
    if not (math.isfinite(timeout) and 0.0 <= timeout <= MAX_WAIT_S):
        raise InputError(f"timeout_s {timeout!r} must be a number of seconds in [0, {MAX_WAIT_S:.0f}] (0 = "
                         f"{DEFAULT_WAIT_S:.0f} s)", reason="bad_timeout")
    conv.request_pose_to_matrix(req.object_pose)  # bad_quaternion, bad_object_pose
    roi = req.roi
    if roi.width > 0 and roi.height == 0:  # width 0: no box; the image's size is checked on the frame
        raise InputError(f"roi {roi.width}x{roi.height} is empty (width 0 = no box)", reason="bad_roi")


class ReferenceServices:
    """The reference services of ``One2AnyNode``; the node's ``__init__`` creates the services and calls
    ``_load_references``."""

    def _wait_frame(self, req, seq: int) -> tuple[Frame | None, str]:
        """The frame ~/set_reference uses: the newest one, or the first after the call (frame ``seq``)."""
        if req.use_latest_frame:
            frame = self._mailbox.latest()
            return frame, "" if frame else "no_frame: no synchronized frame received yet" + self._input_issue()
        timeout = float(req.timeout_s) if req.timeout_s > 0 else DEFAULT_WAIT_S
        frame = self._mailbox.wait_frame_after(seq, timeout)
        return frame, "" if frame else f"no_frame: no synchronized frame within {timeout:.1f} s" + self._input_issue()

    async def _srv_set_reference(self, req: SetReference.Request, res: SetReference.Response) -> SetReference.Response:
        seq = self._mailbox.seq
        try:  # at the door: a malformed request never reaches the worker
            check_set_request(req)
        except One2AnyError as e:
            return self._refuse(res, e, f"set_reference {req.object_id!r}")
        wait_s = 0.0 if req.use_latest_frame else (float(req.timeout_s) or DEFAULT_WAIT_S)
        try:
            return await self._on_worker(lambda: self._set_reference(req, res, seq), wait_s=wait_s)
        except One2AnyError as e:  # the worker missed the deadline (worker_timeout)
            return self._refuse(res, e, f"set_reference {req.object_id!r}")
        except Exception as e:  # a bug must not leave the caller without an answer
            self.get_logger().error(f"internal error in set_reference: {traceback.format_exc()}")
            res.success, res.message = False, f"internal_error: {e!r}"
            return res

    def _refuse(self, res, error: One2AnyError, what: str):
        """A request refused: recorded (last_failure, log) and answered ``success: false`` with ``reason: text``."""
        self._fail(error.reason, f"{what}: {error}", frame=False)
        res.success, res.message = False, f"{error.reason}: {error}"
        return res

    def _set_reference(self, req: SetReference.Request, res: SetReference.Response, seq: int) -> SetReference.Response:
        """The worker's half of ~/set_reference: a bad request is refused before any frame is taken."""
        s = self._settings
        oid, label = req.object_id, int(req.mask_label)
        what = "reference" if oid == DEFAULT_OBJECT else f"reference of '{oid}'"
        try:
            with self._estimator() as objs:  # a clear on the executor thread must not change them meanwhile
                objs.check_new(oid, label)  # name, label used by another object, one object too many
            frame, why = self._wait_frame(req, seq)
            if frame is None:
                raise One2AnyError(why.split(": ", 1)[1], reason="no_frame")
            self._check_age(frame, s)
            T_cam_obj = conv.request_pose_to_matrix(req.object_pose) if req.has_object_pose else None
            box = conv.roi_to_box(req.roi)
            msgs = self._frame_messages(frame, s, need_mask_s=0.0 if box.is_set else REFERENCE_MASK_WAIT_S)
            qframe = conv.frame_from_messages(msgs, min_depth=s.min_depth, max_depth=s.max_depth)
            if not box.is_set:  # no roi: a detector's box for this object, if one came with the frame
                box = self._boxes_of(msgs, [oid]).get(oid, box)
            if qframe.labels is None and not box.is_set:
                raise InputError("no mask (on `mask`) or box (roi, or on `boxes`) came with the frame stamped "
                                 f"{conv.stamp_text(frame.stamp_ns)} s: nothing says which pixels are the object",
                                 reason="empty_mask")
            with self._estimator() as objs:
                objs.set_settings(s.estimator)
                ref = objs.set_reference(oid, qframe, mask_label=label, T_cam_obj=T_cam_obj, box=box)
            self._report_helpers()
        except One2AnyError as e:
            return self._refuse(res, e, f"set_reference {oid!r}")
        self._refresh_listing()
        self._obj_stats.pop(oid, None)  # a new reference starts a new record
        self._object_stats(oid).state = "detected"
        try:
            self._store.save(oid, label, ref)
            saved = f"saved to {self._store.file_for(oid)}"
        except (OSError, One2AnyError) as e:
            saved = f"NOT saved to {self._store.file_for(oid)}: {e}"
            self.get_logger().error(f"{what} {saved}")
        res.success, res.num_points, res.object_radius = True, int(ref.num_points), float(ref.scale)
        res.message = (f"{what} set from the frame stamped {conv.stamp_text(frame.stamp_ns)} s (mask label {label or 'any'}): "
                       f"{ref.num_points} points, radius {ref.scale * 1000:.1f} mm; {saved}")
        self.get_logger().info(res.message)
        return res

    async def _srv_remove_reference(self, req: RemoveReference.Request,
                                    res: RemoveReference.Response) -> RemoveReference.Response:
        try:  # at the door
            validate_object_id(req.object_id)
        except One2AnyError as e:
            return self._refuse(res, e, f"remove_reference {req.object_id!r}")
        try:
            return await self._on_worker(lambda: self._remove_reference(req.object_id, res))
        except One2AnyError as e:  # the worker missed the deadline (worker_timeout)
            return self._refuse(res, e, f"remove_reference {req.object_id!r}")
        except Exception as e:  # a bug must not leave the caller without an answer
            self.get_logger().error(f"internal error in remove_reference: {traceback.format_exc()}")
            res.success, res.message = False, f"internal_error: {e!r}"
            return res

    def _remove_reference(self, object_id: str, res: RemoveReference.Response) -> RemoveReference.Response:
        """The worker's half of ~/remove_reference (after the frame in progress): forget it and its file."""
        try:
            with self._estimator() as objs:
                objs.remove(object_id)  # forgotten here even when its helper process fails to answer
        except One2AnyError as e:
            res.success, res.message = False, f"{e.reason}: {e}"
            return res
        finally:
            self._report_helpers()
        self._refresh_listing()
        self._obj_stats.pop(object_id, None)
        self._boxes.pop(object_id, None)
        res.success, res.message = True, f"removed {object_id!r}"
        try:
            self._store.remove(object_id)
            res.message += f"; deleted {self._store.file_for(object_id)}"
        except OSError as e:
            res.message += f"; could not delete its file: {e}"
        self.get_logger().info(res.message)
        return res

    def _srv_list_references(self, req: ListReferences.Request, res: ListReferences.Response) -> ListReferences.Response:
        s, listing = self._settings, [] if self._clear_pending else list(self._listing)
        res.object_ids = [oid for oid, _, _ in listing]
        res.mask_labels = [label for _, label, _ in listing]
        res.object_radius = [float(r) for _, _, r in listing]
        res.child_frames = [self._child_frame(oid, s) for oid, _, _ in listing]
        return res

    def _refresh_listing(self) -> None:
        """The snapshot other threads read (list_references, diagnostics): replaced whole after each change."""
        self._listing = [(o, self._objects.get(o).mask_label, float(self._objects.get(o).reference.scale))
                         for o in self._objects.object_ids]

    @contextmanager
    def _estimator(self):
        """The objects under their lock, with a clear that came in while they were busy applied first."""
        with self._lock:
            if self._clear_pending:
                self._objects.clear()
                self._clear_pending = False
                self._refresh_listing()
            yield self._objects

    def _srv_clear_reference(self, req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        n = 0 if self._clear_pending else len(self._listing)
        if self._lock.acquire(blocking=False):
            try:
                self._objects.clear()
                self._clear_pending = False
                self._refresh_listing()
            finally:
                self._lock.release()
        else:  # a frame (or a backend swap) holds the estimator: do not wait for it
            self._clear_pending = True
        self._obj_stats.clear()
        res.success = True
        res.message = f"{n} reference{'s' if n != 1 else ''} cleared" if n else "no reference was set"
        try:
            self._store.clear()
            res.message += f"; deleted the saved references ({self._ref_path})"
        except OSError as e:
            res.message += f"; could not delete the saved references: {e}"
        self.get_logger().info(res.message)
        return res

    def _report_helpers(self) -> None:
        """The worker's report of the object helper processes (core/multi_object.py): said once in the log when
        they were turned off, or when one is started again (and when it is back); the snapshot /diagnostics reads."""
        objs = self._objects
        err, degraded = objs.helper_error, objs.degraded
        if err and err != getattr(self, "_helper_reported", ""):
            self._helper_reported = err
            self.get_logger().warning(err)
        before = self._degraded[0]
        if degraded != before:
            if degraded:
                self.get_logger().warning(f"object helper process: {degraded}")
            else:
                self.get_logger().info("object helper processes back: every object is estimated where it was placed")
        self._degraded = (degraded or err, objs.degraded_objects())

    def _load_references(self) -> None:
        """Every saved reference, in the order it was set; one that cannot be restored is reported, the others
        load (a corrupt file must not stop the node, whatever the loader raises)."""
        try:
            for stray in self._store.remove_stray_temp_files():  # what a kill during a save left
                self.get_logger().info(f"removed {stray}, a reference file left half-written")
        except OSError as e:
            self.get_logger().warning(f"could not remove the half-written files beside {self._ref_path}: {e}")
        try:
            loaded, errors = self._store.load()
        except Exception as e:  # noqa: BLE001
            loaded, errors = [], [("", repr(e))]
        for oid, label, ref in loaded:
            try:
                self._objects.set_reference(oid, ref, mask_label=label)
                what = "" if oid == DEFAULT_OBJECT else f" of {oid!r} (mask label {label})"
                self.get_logger().info(f"reference{what} restored from {self._store.file_for(oid)}")
            except Exception as e:  # noqa: BLE001
                errors.append((oid, repr(e)))
        self._report_helpers()
        for oid, err in errors:
            what = "" if oid == DEFAULT_OBJECT else f" of {oid!r}"
            self.get_logger().error(f"could not restore the reference{what}: {err}; running without one")
            self._stats.failure("bad_reference_file", f"{self._store.file_for(oid) if oid else self._ref_path}: {err}",
                                frame=False)
        if not loaded and not errors:
            self.get_logger().info(f"no saved reference at {self._ref_path}")
        self._refresh_listing()
