"""The node's reference services (docs/ros.md, Services): ``~/set_reference``, ``~/remove_reference``,
``~/list_references``, ``~/clear_reference``, and the references restored at start.

Built like tf2_ros's ``TransformListener(buffer, node)``: :class:`ReferenceServices` is handed the object table
it acts on (ros/object_table.py), the node's mailbox and the node itself, and creates the services on the node.
It uses the node's public methods only (:class:`ReferenceHost`), never its members.

Threads: set and remove run on the worker (``ReferenceHost.run_on_worker``), after the frame in progress; list and
clear answer on the executor thread at once (clear never waits for the estimator: ``ObjectTable.clear``).
"""
from __future__ import annotations

import math
import traceback
from typing import Awaitable, Callable, Protocol

from rclpy.callback_groups import CallbackGroup
from rclpy.impl.rcutils_logger import RcutilsLogger
from std_srvs.srv import Trigger

from one2any_ros.core.errors import InputError, One2AnyError
from one2any_ros.core.frame import DEFAULT_OBJECT, validate_object_id
from one2any_ros.ros import conversions as conv
from one2any_ros.ros.cue_input import boxes_of
from one2any_ros.ros.diagnostics import NodeStats
from one2any_ros.ros.mailbox import Mailbox
from one2any_ros.ros.object_table import ObjectTable
from one2any_ros.ros.params import NodeSettings
from one2any_ros.ros.sync import Frame
from one2any_ros.srv import ListReferences, RemoveReference, SetReference

REFERENCE_MASK_WAIT_S = 1.0  # ~/set_reference without roi waits this long for its frame's mask or boxes

DEFAULT_WAIT_S = 2.0  # ~/set_reference timeout_s = 0
MAX_WAIT_S = 60.0  # ~/set_reference timeout_s above this is refused (bad_timeout): the worker waits that long at most


class ReferenceHost(Protocol):
    """What the services use of the node (``One2AnyNode``), besides rclpy's ``create_service`` and ``get_logger``."""

    @property
    def settings(self) -> NodeSettings: ...

    def fail(self, reason: str, message: str, *, frame: bool = True) -> None: ...

    def run_on_worker(self, fn: Callable[[], object], *, wait_s: float = 0.0) -> Awaitable: ...

    def input_issue(self) -> str: ...

    def read_frame(self, frame: Frame, s: NodeSettings, *, need_mask_s: float = 0.0) -> tuple[dict, object]: ...

    def get_logger(self) -> RcutilsLogger: ...


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
    """The four reference services of ``node``, acting on ``table``; set and remove wait on the worker from
    ``callback_group`` (reentrant: the inputs keep flowing meanwhile)."""

    def __init__(self, node: ReferenceHost, table: ObjectTable, mailbox: Mailbox[Frame], *,
                 callback_group: CallbackGroup) -> None:
        self._node, self._table, self._mailbox = node, table, mailbox
        self._log = node.get_logger()
        node.create_service(SetReference, "~/set_reference", self.set_reference, callback_group=callback_group)
        node.create_service(RemoveReference, "~/remove_reference", self.remove_reference,
                            callback_group=callback_group)
        node.create_service(ListReferences, "~/list_references", self.list_references)
        node.create_service(Trigger, "~/clear_reference", self.clear_reference)

    def _wait_frame(self, req: SetReference.Request, seq: int) -> tuple[Frame | None, str]:
        """The frame ~/set_reference uses: the newest one, or the first after the call (frame ``seq``)."""
        if req.use_latest_frame:
            frame = self._mailbox.latest()
            return frame, "" if frame else "no_frame: no synchronized frame received yet" + self._node.input_issue()
        timeout = float(req.timeout_s) if req.timeout_s > 0 else DEFAULT_WAIT_S
        frame = self._mailbox.wait_frame_after(seq, timeout)
        return frame, "" if frame else (f"no_frame: no synchronized frame within {timeout:.1f} s"
                                        + self._node.input_issue())

    async def _answer(self, res, service: str, object_id: str, job: Callable[[], object], *, wait_s: float = 0.0):
        """Run a service's ``job`` on the worker and answer with its result; a missed deadline (worker_timeout) is
        refused, a bug answered ``internal_error`` (a caller is never left without an answer)."""
        try:
            return await self._node.run_on_worker(job, wait_s=wait_s)
        except One2AnyError as e:  # the worker missed the deadline (worker_timeout)
            return self._refuse(res, e, f"{service} {object_id!r}")
        except Exception as e:  # a bug must not leave the caller without an answer
            self._log.error(f"internal error in {service}: {traceback.format_exc()}")
            res.success, res.message = False, f"internal_error: {e!r}"
            return res

    async def set_reference(self, req: SetReference.Request, res: SetReference.Response) -> SetReference.Response:
        seq = self._mailbox.seq
        try:  # at the door: a malformed request never reaches the worker
            check_set_request(req)
        except One2AnyError as e:
            return self._refuse(res, e, f"set_reference {req.object_id!r}")
        wait_s = 0.0 if req.use_latest_frame else (float(req.timeout_s) or DEFAULT_WAIT_S)
        return await self._answer(res, "set_reference", req.object_id, lambda: self._set_on_worker(req, res, seq),
                                  wait_s=wait_s)

    def _refuse(self, res, error: One2AnyError, what: str):
        """A request refused: recorded (last_failure, log) and answered ``success: false`` with ``reason: text``."""
        self._node.fail(error.reason, f"{what}: {error}", frame=False)
        res.success, res.message = False, f"{error.reason}: {error}"
        return res

    def _set_on_worker(self, req: SetReference.Request, res: SetReference.Response,
                       seq: int) -> SetReference.Response:
        """The worker's half of ~/set_reference: a bad request is refused before any frame is taken."""
        oid, label = req.object_id, int(req.mask_label)
        try:
            frame, ref = self._make_reference(req, seq)
        except One2AnyError as e:
            return self._refuse(res, e, f"set_reference {oid!r}")
        self._table.refresh_listing()
        self._table.forget_records(oid)  # a new reference starts a new record
        self._table.object_stats(oid).state = "detected"
        saved = self._save(oid, label, ref)
        what = "reference" if oid == DEFAULT_OBJECT else f"reference of '{oid}'"
        res.success, res.num_points, res.object_radius = True, int(ref.num_points), float(ref.scale)
        res.message = (f"{what} set from the frame stamped {conv.stamp_text(frame.stamp_ns)} s (mask label "
                       f"{label or 'any'}): {ref.num_points} points, radius {ref.scale * 1000:.1f} mm; {saved}")
        self._log.info(res.message)
        return res

    def _make_reference(self, req: SetReference.Request, seq: int) -> tuple[Frame, object]:
        """The frame the request names and the reference set from it (One2AnyError when it cannot be)."""
        s = self._node.settings
        oid, label = req.object_id, int(req.mask_label)
        with self._table.estimator() as objs:  # a clear on the executor thread must not change them meanwhile
            objs.check_new(oid, label)  # name, label used by another object, one object too many
        frame, why = self._wait_frame(req, seq)
        if frame is None:
            raise One2AnyError(why.split(": ", 1)[1], reason="no_frame")
        T_cam_obj = conv.request_pose_to_matrix(req.object_pose) if req.has_object_pose else None
        box = conv.roi_to_box(req.roi)
        msgs, qframe = self._node.read_frame(frame, s, need_mask_s=0.0 if box.is_set else REFERENCE_MASK_WAIT_S)
        box = box.scaled(qframe.stride)  # the roi is in the camera's pixels
        if not box.is_set:  # no roi: a detector's box for this object, if one came with the frame
            box = boxes_of(msgs, [oid], qframe.stride).get(oid, box)
        if qframe.labels is None and not box.is_set:
            raise InputError("no mask (on `mask`) or box (roi, or on `boxes`) came with the frame stamped "
                             f"{conv.stamp_text(frame.stamp_ns)} s: nothing says which pixels are the object",
                             reason="empty_mask")
        with self._table.estimator() as objs:
            objs.set_settings(s.estimator)
            ref = objs.set_reference(oid, qframe, mask_label=label, T_cam_obj=T_cam_obj, box=box)
        self._table.report_helpers()
        return frame, ref

    def _save(self, oid: str, label: int, ref) -> str:
        """Save the reference; the words the answer ends with (a failure is also logged)."""
        store = self._table.store
        try:
            store.save(oid, label, ref)
            return f"saved to {store.file_for(oid)}"
        except (OSError, One2AnyError) as e:
            saved = f"NOT saved to {store.file_for(oid)}: {e}"
            what = "reference" if oid == DEFAULT_OBJECT else f"reference of '{oid}'"
            self._log.error(f"{what} {saved}")
            return saved

    async def remove_reference(self, req: RemoveReference.Request,
                               res: RemoveReference.Response) -> RemoveReference.Response:
        try:  # at the door
            validate_object_id(req.object_id)
        except One2AnyError as e:
            return self._refuse(res, e, f"remove_reference {req.object_id!r}")
        return await self._answer(res, "remove_reference", req.object_id,
                                  lambda: self._remove_on_worker(req.object_id, res))

    def _remove_on_worker(self, object_id: str, res: RemoveReference.Response) -> RemoveReference.Response:
        """The worker's half of ~/remove_reference (after the frame in progress): forget it and its file."""
        try:
            with self._table.estimator() as objs:
                objs.remove(object_id)  # forgotten here even when its helper process fails to answer
        except One2AnyError as e:
            res.success, res.message = False, f"{e.reason}: {e}"
            return res
        finally:
            self._table.report_helpers()
        self._table.refresh_listing()
        self._table.forget_records(object_id)
        res.success, res.message = True, f"removed {object_id!r}"
        try:
            self._table.store.remove(object_id)
            res.message += f"; deleted {self._table.store.file_for(object_id)}"
        except OSError as e:
            res.message += f"; could not delete its file: {e}"
        self._log.info(res.message)
        return res

    def list_references(self, req: ListReferences.Request, res: ListReferences.Response) -> ListReferences.Response:
        s, listing = self._node.settings, self._table.listing()
        res.object_ids = [oid for oid, _, _ in listing]
        res.mask_labels = [label for _, label, _ in listing]
        res.object_radius = [float(r) for _, _, r in listing]
        res.child_frames = [s.child_frame(oid) for oid, _, _ in listing]
        return res

    def clear_reference(self, req: Trigger.Request, res: Trigger.Response) -> Trigger.Response:
        n = self._table.clear()
        res.success = True
        res.message = f"{n} reference{'s' if n != 1 else ''} cleared" if n else "no reference was set"
        try:
            self._table.store.clear()
            res.message += f"; deleted the saved references ({self._table.store.path})"
        except OSError as e:
            res.message += f"; could not delete the saved references: {e}"
        self._log.info(res.message)
        return res


def restore_references(table: ObjectTable, logger: RcutilsLogger, stats: NodeStats) -> None:
    """Every saved reference, in the order it was set; one that cannot be restored is reported, the others
    load (a corrupt file must not stop the node, whatever the loader raises)."""
    store = table.store
    try:
        for stray in store.remove_stray_temp_files():  # what a kill during a save left
            logger.info(f"removed {stray}, a reference file left half-written")
    except OSError as e:
        logger.warning(f"could not remove the half-written files beside {store.path}: {e}")
    try:
        loaded, errors = store.load()
    except Exception as e:  # noqa: BLE001
        loaded, errors = [], [("", repr(e))]
    for oid, label, ref in loaded:
        try:
            table.objects.set_reference(oid, ref, mask_label=label)
            what = "" if oid == DEFAULT_OBJECT else f" of {oid!r} (mask label {label})"
            logger.info(f"reference{what} restored from {store.file_for(oid)}")
        except Exception as e:  # noqa: BLE001
            errors.append((oid, repr(e)))
    table.report_helpers()
    for oid, err in errors:
        what = "" if oid == DEFAULT_OBJECT else f" of {oid!r}"
        logger.error(f"could not restore the reference{what}: {err}; running without one")
        stats.failure("bad_reference_file", f"{store.file_for(oid) if oid else store.path}: {err}", frame=False)
    if not loaded and not errors:
        logger.info(f"no saved reference at {store.path}")
    table.refresh_listing()
