"""Several objects, one frame (issue 17, the library): named references selected from one segmenter's label image,
each tracked from its own last pose, all estimated on one decoded frame.

- the frame: ``core/frame.decode_frame``, one synchronized RGB-D (+ label image) decoded once; every object's view is
  a selection of its pixels.
- ``MultiObjectEstimator``: up to ``max_objects`` references keyed by ``object_id`` ("" = the default object,
  else ``[A-Za-z0-9_]{1,32}``), in the order they were set, each with its ``mask_label`` (0 = every non-zero
  pixel) and its own ``PoseEstimator``; all share one backend (one network in memory). ``estimate_all`` gives
  each object a ``PoseResult`` or the ``One2AnyError`` that says why not (``empty_mask`` when its label is
  missing from the frame); one object's failure never touches the others.

What the objects share per frame: the decoded rgb and depth, the label image, the free-space depth
(``verify.near_depth``) and the backend. What stays per object: its pixels, and what depends on them (its
back-projected points, colour features normalised over its own pixels, the network's crop); that is most of
the work, mostly numpy under the GIL, so the objects of a frame are spread over this process and ``processes``
helper processes (core/object_processes.py; one per extra core by default) that estimate theirs on the same frame
at the same time (docs/benchmarks.md, Several objects).
No ROS here; the node (ros/node.py) is a thin layer over it.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace

import numpy as np

from one2any_ros.core.backends import Backend, create_backend
from one2any_ros.core.box_segment import Box
from one2any_ros.core.errors import EstimationFailure, InputError, One2AnyError
from one2any_ros.core.estimator import PoseEstimator, PoseResult, ensure_embedding
from one2any_ros.core.estimator_settings import EstimatorSettings
from one2any_ros.core.frame import Frame, View, check_label, validate_object_id
from one2any_ros.core.geometry import transform_points
from one2any_ros.core.query_threads import limit_threads
from one2any_ros.core.object_processes import HELPER_TIMEOUT_S, HelperStopped, ObjectProcess, SharedFrame
from one2any_ros.core.reference import Reference, make_reference
from one2any_ros.core.tracking import (Cue, ObjectTrack, claimed_masks, estimate_object, predicted_mask,
                                      track_margin_m)

MAX_OBJECTS = 8
MASK_MODES = ("when_needed", "every_frame")  # docs/ros.md, Masks only when needed
MAX_INSTANCE_TRIES = 3  # an untracked object tries at most this many free instances of a frame (the largest)
MAX_HELPER_RESTARTS = 3  # a helper that fails this many times in a row (never answering a frame) turns the helpers off


@dataclass
class TrackedObject:
    """One object: its reference and where it is estimated (``shard`` 0: in this process, by ``estimator``; k >= 1:
    in helper process k, which holds its estimator, or here by a stand-in ``estimator`` while that helper starts
    again)."""

    object_id: str
    mask_label: int
    reference: Reference
    shard: int = 0
    estimator: PoseEstimator | None = None
    track: ObjectTrack = field(default_factory=ObjectTrack)  # its last poses, wherever it is estimated


def default_processes() -> int:
    """Helper processes when none is asked for: one per core beyond the caller's own.

    Returns:
        int >= 0: ``os.cpu_count() - 1`` (0 when the count is unknown).
    """
    return max(0, (os.cpu_count() or 1) - 1)


class MultiObjectEstimator:
    """Named references on one stream (see the module docstring). Not thread-safe: one caller (the node's worker)."""

    def __init__(self, backend: str | Backend = "auto", *, settings: EstimatorSettings | None = None,
                 device: str = "auto", checkpoint: str | None = None, max_objects: int = MAX_OBJECTS,
                 processes: int | None = None, helper_timeout_s: float = HELPER_TIMEOUT_S) -> None:
        """``processes``: helper processes that estimate some of a frame's objects while this one estimates the rest
        (core/object_processes.py; None = ``default_processes()``, 0 = all here, in turn). They start when the
        second object is set and need a backend made by ``create_backend`` (its recipe); without one, all run here.
        ``helper_timeout_s``: how long a helper may take beyond this process's own share of a frame (at least twice
        that share) and for any other answer; one that misses it is killed and started again in the background, its
        objects estimated here meanwhile (``degraded`` says so)."""
        self.backend: Backend = create_backend(backend, device=device, checkpoint=checkpoint) if isinstance(backend, str) else backend
        self.settings = settings or EstimatorSettings()
        self.max_objects = int(max_objects)
        self.processes = max(0, int(default_processes() if processes is None else processes))
        self._objects: dict[str, TrackedObject] = {}  # insertion order = the order they were set
        self._helpers: dict[int, ObjectProcess] = {}  # shard -> its helper, started on first use
        self.helper_timeout_s = float(helper_timeout_s)
        self.helper_error = ""  # why the helpers were turned off, if they were (_all_here)
        self._restarting: dict[int, str] = {}  # shard -> why its helper is being started again
        self._shared = SharedFrame()

    # --- references ------------------------------------------------------------------------------------
    @property
    def object_ids(self) -> list[str]:
        return list(self._objects)

    def __contains__(self, object_id: str) -> bool:
        return object_id in self._objects

    def __len__(self) -> int:
        return len(self._objects)

    def get(self, object_id: str) -> TrackedObject:
        if object_id not in self._objects:
            raise InputError(f"no reference named {object_id!r} (known: {', '.join(map(repr, self._objects)) or 'none'})",
                             reason="unknown_object")
        return self._objects[object_id]

    def check_new(self, object_id: str, mask_label: int) -> None:
        """Raise InputError if ``object_id`` with ``mask_label`` cannot be set (bad name, a label another object
        already selects, one object too many) - before any frame is taken."""
        validate_object_id(object_id)
        check_label(mask_label)
        for other in self._objects.values():
            if other.object_id != object_id and other.mask_label == int(mask_label):
                raise InputError(f"mask_label {mask_label} already selects object {other.object_id!r}: remove it "
                                 "first or use another label", reason="duplicate_mask_label")
        if object_id not in self._objects and len(self._objects) >= self.max_objects:
            raise InputError(f"already {len(self._objects)} objects (max_objects {self.max_objects}): remove one first",
                             reason="too_many_objects")

    def set_reference(self, object_id: str, source: Frame | View | Reference, *, mask_label: int = 0,
                      T_cam_obj: np.ndarray | None = None, box: Box | None = None) -> Reference:
        """Set (or replace) an object's reference from a frame (its ``mask_label`` pixels, within ``box`` when one is
        given: ``Frame.view``), a View or a loaded Reference. Nothing changes when it fails. A replaced object keeps
        its place of estimation; a new one goes where the fewest objects are (this process first)."""
        self.check_new(object_id, mask_label)
        if isinstance(source, Frame):
            others = self._known_pixels(source, object_id) if box is not None and box.is_set else None
            source = source.view(mask_label, T_cam_obj=T_cam_obj, box=box, others=others)
        seen_now = not isinstance(source, Reference)
        ref = source if isinstance(source, Reference) else make_reference(source)
        old = self._objects.get(object_id)
        shard = old.shard if old is not None else self._least_loaded()
        obj = self._place(TrackedObject(object_id, int(mask_label), ref, shard))
        # a reference view is a pose already: the next frames track from it without a mask; a loaded reference
        # (a restart) gives only the place to search first
        obj.track = ObjectTrack(last_T_C=ref.T_refcam_C.copy() if seen_now else None, seen_T_C=ref.T_refcam_C.copy())
        self._objects.pop(object_id, None)  # a replaced object moves to the end, like a new one
        self._objects[object_id] = obj
        return obj.reference

    def _known_pixels(self, frame: Frame, object_id: str) -> np.ndarray | None:
        """(H,W) bool: the pixels of the other objects with a pose on the last frame (``_surfaces``; on the frame they
        were set from, their own surfaces), which an object set from a box must not take (a box around it holds a
        neighbour that touches it; depth alone does not part them). None when there are none."""
        poses = {oid: o.track.last_T_C for oid, o in self._objects.items()
                 if oid != object_id and o.track.last_T_C is not None}
        return self._surfaces(frame, poses) if poses else None

    def _shards(self) -> int:
        """Places of estimation: this process, and the helpers when the backend can be made again in another."""
        return 1 + (self.processes if self.backend.recipe is not None else 0)

    def _least_loaded(self) -> int:
        load = [0] * self._shards()
        for o in self._objects.values():
            if o.shard < len(load):
                load[o.shard] += 1
        return int(np.argmin(load))  # the first of the least loaded: this process before any helper

    def _place(self, obj: TrackedObject) -> TrackedObject:
        """Encode ``obj``'s reference (here, once) and set it up where ``obj.shard`` says."""
        if obj.shard == 0:
            obj.estimator = PoseEstimator(self.backend, settings=self.settings)
            obj.reference = obj.estimator.set_reference(obj.reference)
            return obj
        obj.estimator = None
        obj.reference = ensure_embedding(obj.reference, self.backend)
        helper = self._helpers.get(obj.shard)
        if helper is None:  # the shard's first object: its helper starts now, and this waits for it
            share = max(1, (os.cpu_count() or 1) // (self.processes + 1))
            limit_threads(share)  # this process estimates beside its helpers from now on: its share of the cores
            try:
                helper = ObjectProcess(self.backend.recipe, self.settings,  # type: ignore[arg-type]
                                       threads=share, timeout_s=self.helper_timeout_s)
                self._helpers[obj.shard] = helper
                helper.set_object(obj.object_id, obj.reference, obj.mask_label)
                helper.wait_started()
            except (HelperStopped, OSError) as e:
                self._all_here(e)
                obj.shard = 0
                return self._place(obj)
            return obj
        try:
            helper.set_object(obj.object_id, obj.reference, obj.mask_label)  # recorded first: a restart includes it
        except (HelperStopped, RuntimeError) as e:
            self._restart(helper, _stopped(e), {})  # estimated here until the new helper has it
        return obj

    def _all_here(self, why: Exception) -> None:
        """A helper that cannot be started (or fails again and again): every object is estimated in this process
        from now on - slower, never wrong - and ``helper_error`` says why."""
        self.helper_error = f"object helper processes are off ({why}); every object is estimated in this process"
        self.processes = 0
        self._stop_helpers()
        for other in self._objects.values():
            if other.shard != 0:
                other.shard = 0
                self._place(other)

    def _restart(self, helper: ObjectProcess, why: HelperStopped, results: dict) -> None:
        """A helper died or missed a deadline: its objects get ``why`` for this frame (unless they have a result),
        and it is killed and started again in the background; meanwhile this process estimates its objects
        (``_estimator_here``). One that fails MAX_HELPER_RESTARTS times in a row turns the helpers off."""
        shard = next((k for k, h in self._helpers.items() if h is helper), None)
        if shard is None:
            return  # closed meanwhile: the helpers were turned off
        for object_id in helper.objects:
            results.setdefault(object_id, why)
        if not helper.objects:  # nothing to start it again for: a new one comes with the shard's next object
            helper.kill()
            del self._helpers[shard]
            self._restarting.pop(shard, None)
            return
        helper.failures += 1
        if helper.failures > MAX_HELPER_RESTARTS:
            return self._all_here(why)
        self._restarting[shard] = f"{why.reason}: {why}"
        try:
            helper.restart()
        except (HelperStopped, OSError) as e:
            self._all_here(e)

    def _poll_restarts(self) -> None:
        """Helpers started again take their objects back once they have started (checked without waiting)."""
        for shard, helper in list(self._helpers.items()):
            if not helper.starting or helper not in self._helpers.values():
                continue
            try:
                if helper.poll_started():
                    self._restarting.pop(shard, None)
            except (HelperStopped, RuntimeError) as e:
                self._restart(helper, _stopped(e), {})

    def _estimator_here(self, obj: TrackedObject) -> PoseEstimator | None:
        """The estimator that estimates ``obj`` in this process on this frame: its own (shard 0), a stand-in while
        its helper starts again (made on first use), or None when its helper estimates it."""
        if obj.shard == 0:
            return obj.estimator
        helper = self._helpers.get(obj.shard)
        if helper is not None and not helper.starting:
            obj.estimator = None  # back in its helper (its track goes with its cue: ``obj.track``)
            return None
        if obj.estimator is None:
            obj.estimator = PoseEstimator(self.backend, settings=self.settings)
            obj.estimator.set_reference(obj.reference)
        return obj.estimator

    @property
    def degraded(self) -> str:
        """Why some objects are estimated in this process for now (their helper is being started again); "" when
        none is. ``helper_error`` says when the helpers are off for good."""
        return "; ".join(self._restarting.values())

    def degraded_objects(self) -> dict[str, str]:
        """object_id -> why it is estimated here for now (its helper is being started again)."""
        return {object_id: why for shard, why in self._restarting.items() if shard in self._helpers
                for object_id in self._helpers[shard].objects}

    def remove(self, object_id: str) -> None:
        """Forget the object here first, then in its helper (a helper that fails to answer is started again without
        it): once this returns, no frame estimates it."""
        obj = self.get(object_id)
        del self._objects[object_id]
        helper = self._helpers.get(obj.shard) if obj.shard else None
        if helper is not None:
            try:
                helper.remove(object_id)
            except (HelperStopped, RuntimeError) as e:
                self._restart(helper, _stopped(e), {})

    def clear(self) -> None:
        for object_id in list(self._objects):
            self.remove(object_id)

    def set_settings(self, settings: EstimatorSettings) -> None:
        """New thresholds for every object (the node swaps them between frames; helpers get them with the next
        frame)."""
        self.settings = settings
        for obj in self._objects.values():
            if obj.estimator is not None:
                obj.estimator.settings = settings

    def set_backend(self, backend: str | Backend, **kw) -> None:
        """Another backend for every object (references re-encoded, helpers started again; tracks kept)."""
        self.backend = create_backend(backend, **kw) if isinstance(backend, str) else backend
        self._stop_helpers()
        for obj in list(self._objects.values()):
            obj.shard = obj.shard if obj.shard < self._shards() else 0
            self._place(obj)

    # --- estimation --------------------------------------------------------------------------------------
    def estimate_all(self, frame: Frame, *, track: bool = True, boxes: dict[str, Box] | None = None,
                     mask_mode: str = "every_frame",
                     instance_labels: bool = False) -> dict[str, PoseResult | One2AnyError]:
        """Every object on one frame: its PoseResult, or the error that says why not, in the order they were set.
        What each object gets of the frame (core/tracking.py, ``Cue``): its label's pixels of ``frame.labels``, its box
        of ``boxes`` (object id -> Box), else its last pose or place. ``mask_mode`` "every_frame": a label image whose
        label is missing gives the object empty_mask; "when_needed": the object is tracked without it.
        ``instance_labels``: label values are per-frame instance ids (``_assign_instances``). ``track=False``:
        one-shot (the last pose is not used; the new one is kept).
        The helpers' objects are estimated while this process estimates its own (``_estimate_round``); a lost object
        whose search found nothing while another lost object was found is searched for once more without the found
        one's pixels (``_search_again``)."""
        if mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
        near = frame.near_depth()  # shared: computed before the objects start
        cues = self._cues(frame, boxes or {}, mask_mode, instance_labels, track)
        results: dict[str, PoseResult | One2AnyError] = {}
        self._poll_restarts()
        self._estimate_round(frame, cues, near, results)
        again = self._search_again(frame, cues, results)
        if again:
            self._estimate_round(frame, again, near, results)
        lost = HelperStopped("the object helper processes were turned off while this frame was estimated: "
                             f"{self.helper_error}")
        out = {object_id: results.get(object_id, lost) for object_id in self._objects}
        for object_id, r in out.items():  # a one-shot pose is a last pose too
            self._objects[object_id].track.update(r)
        return out

    def _estimate_round(self, frame: Frame, cues: dict[str, Cue], near: np.ndarray, results: dict) -> None:
        """The objects of ``cues`` on ``frame``, into ``results``: the helpers' while this process estimates its own.
        Only One2AnyError is caught (bad input, no trustworthy pose; a helper process that stopped: it is started
        again); anything else is a bug and raises."""
        asked = self._ask_helpers(frame, cues, results)
        t0 = time.monotonic()
        for obj in self._objects.values():
            est = self._estimator_here(obj) if obj.object_id in cues else None
            if est is not None:
                try:
                    results[obj.object_id] = estimate_object(est, frame, cues[obj.object_id], near)
                except One2AnyError as e:
                    results[obj.object_id] = e
        # the helpers did the same kind of work at the same time: give them what this process took, twice, at least
        end = time.monotonic() + max(self.helper_timeout_s, 2.0 * (time.monotonic() - t0))
        bug = None
        for helper in asked:  # every answer is read, a bug's too, so each pipe stays in step
            if helper not in self._helpers.values():
                continue  # closed meanwhile: the helpers were turned off (_all_here)
            try:
                results.update(helper.answer(max(0.0, end - time.monotonic())))
                helper.failures = 0
            except HelperStopped as e:
                self._restart(helper, e, results)
            except RuntimeError as e:
                bug = bug or e
        if bug is not None:
            raise bug

    def _search_again(self, frame: Frame, cues: dict[str, Cue], results: dict) -> dict[str, Cue]:
        """Cues for one more search, on this frame, of each lost object whose search found nothing while another lost
        object was found: without the found ones' pixels (``_surfaces``, at the poses just found). Two objects that
        an arm or an occluder hid come back together, and the first one's search region, about its last place, may
        hold the other, bigger one (the search takes the largest part there). Empty when there is nothing to search
        again (the usual case)."""
        searched = [oid for oid, c in cues.items() if c.searching]
        found = [oid for oid in searched if isinstance(results.get(oid), PoseResult)]
        failed = [oid for oid in searched if isinstance(results.get(oid), EstimationFailure)]
        if not found or not failed:
            return {}
        taken = self._surfaces(frame, {oid: results[oid].T_camera_C for oid in found})
        return {oid: replace(cues[oid], exclude=taken if cues[oid].exclude is None else cues[oid].exclude | taken)
                for oid in failed}

    def _cues(self, frame: Frame, boxes: dict[str, Box], mask_mode: str, instance_labels: bool,
              track: bool) -> dict[str, Cue]:
        """What the frame offers each object (core/tracking.Cue). Its label's pixels; with ``instance_labels``, or for
        an object set with mask_label 0 among several objects (0 cannot mean "every non-zero pixel" there: those are
        the others' too), the instance ``_assign_instances`` gives it."""
        if frame.labels is None:
            matched, assigned, guessed = [], {}, set()
        else:
            matched = list(self._objects.values()) if instance_labels else \
                [o for o in self._objects.values() if o.mask_label == 0] if len(self._objects) > 1 else []
            held = set() if instance_labels else {o.mask_label for o in self._objects.values() if o.mask_label}
            assigned, guessed = self._assign_instances(frame, matched, held) if matched else ({}, set())
        cues = {}
        for oid, obj in self._objects.items():
            if frame.labels is None:
                labels: tuple[int, ...] = ()
            elif obj in matched:
                labels = assigned.get(oid, ())
            elif mask_mode == "every_frame" or frame.has_label(obj.mask_label):
                labels = (obj.mask_label,)
            else:
                labels = ()
            cue = obj.track.cue(labels, boxes.get(oid)) if track else Cue(labels=labels, box=boxes.get(oid))
            cues[oid] = replace(cue, need_mask=mask_mode == "every_frame" and frame.labels is not None,
                                trust_labels=oid in guessed)
        return self._share_pixels(frame, cues)

    def _share_pixels(self, frame: Frame, cues: dict[str, Cue]) -> dict[str, Cue]:
        """The objects' predicted pixels shared out (``tracking.claimed_masks``) among every object with a place on
        this frame: the tracked ones at their last pose, the lost ones at their last accepted pose (one coming back
        there takes its own pixels back from a neighbour). A tracked object without a mask or a box is estimated on
        its share (``Cue.region``); a lost one is looked for where it was, but not among the tracked objects' shares,
        and an object found in a detector's box is segmented there without the other tracked objects' shares
        (``Cue.exclude``: a box around it holds a neighbour that touches it). One tracked object and nobody lost or
        boxed: nothing to share (it predicts its own pixels, in its own process)."""
        tracked = [oid for oid, c in cues.items() if c.last_T_C is not None]
        searching = [oid for oid, c in cues.items() if c.searching]
        boxed = [oid for oid, c in cues.items() if c.box is not None and c.box.is_set and not c.labels]
        if not searching and len(tracked) < 2 and not any(set(tracked) - {oid} for oid in boxed):
            return cues
        placed = tracked + [oid for oid in searching + boxed
                            if cues[oid].last_T_C is None and cues[oid].seen_T_C is not None]
        clouds = {}
        for oid in placed:
            c, ref = cues[oid], self._objects[oid].reference
            T_C = c.last_T_C if c.last_T_C is not None else c.seen_T_C
            clouds[oid] = (transform_points(T_C, ref.points_C), track_margin_m(self.settings, ref.diameter))
        shares = claimed_masks(frame.depth, frame.K, clouds)
        owned = np.zeros(frame.depth.shape, bool)
        for oid in tracked:
            owned |= shares[oid]
        out = dict(cues)
        for oid in tracked:
            if not cues[oid].has_mask_or_box and not cues[oid].need_mask:
                out[oid] = replace(cues[oid], region=shares[oid])
        for oid in searching:
            out[oid] = replace(cues[oid], exclude=owned)
        for oid in boxed:  # the others' shares (shares never overlap)
            out[oid] = replace(cues[oid], exclude=owned & ~shares[oid] if oid in shares else owned)
        return out

    def _surfaces(self, frame: Frame, poses: dict[str, np.ndarray]) -> np.ndarray:
        """(H,W) bool: the pixels of the objects of ``poses`` (object id -> T_camera_C, a pose on this frame), those
        within ``track_margin_min_m`` of their reference clouds there: their own surfaces, not the neighbours that
        touch them (which the tracking margin, the motion allowed between frames, would take too)."""
        out = np.zeros(frame.depth.shape, bool)
        for oid, T_C in poses.items():
            ref = self._objects[oid].reference
            out |= predicted_mask(frame.depth, frame.K, transform_points(T_C, ref.points_C),
                                  self.settings.track_margin_min_m)
        return out

    def _assign_instances(self, frame: Frame, objects: list[TrackedObject],
                          held: set[int]) -> tuple[dict[str, tuple[int, ...]], set[str]]:
        """Label values as instances, for ``objects`` (the others hold the values in ``held``): each tracked object
        takes the instance that best overlaps its silhouette predicted at its last pose (intersection over union,
        greedily, each instance at most one object); an object that is not tracked may take any instance nobody holds
        (the largest MAX_INSTANCE_TRIES, the verifier choosing, held to the trust test: they are guesses). Returns
        ({object id: its candidate values}, the ids whose candidates are guesses)."""
        counts = frame.label_counts()
        instances = [int(v) for v in np.nonzero(counts)[0] if v != 0 and v not in held]
        labelled_depth = np.where(frame.labels != 0, frame.depth, 0).astype(np.float32)
        pairs = []
        for obj in objects:
            if obj.track.last_T_C is None:
                continue
            ref = obj.reference
            sil = predicted_mask(labelled_depth, frame.K, transform_points(obj.track.last_T_C, ref.points_C),
                                 track_margin_m(self.settings, ref.diameter))
            overlap = np.bincount(frame.labels[sil], minlength=len(counts))
            for v in instances:
                if overlap[v]:
                    pairs.append((overlap[v] / (counts[v] + sil.sum() - overlap[v]), obj.object_id, v))
        taken_objects, taken = set(), set()
        out: dict[str, tuple[int, ...]] = {}
        for _, oid, v in sorted(pairs, reverse=True):
            if oid not in taken_objects and v not in taken:
                out[oid] = (v,)
                taken_objects.add(oid)
                taken.add(v)
        free = sorted((v for v in instances if v not in taken), key=lambda v: -counts[v])[:MAX_INSTANCE_TRIES]
        guessed = {o.object_id for o in objects if o.track.last_T_C is None and free}
        for oid in guessed:
            out[oid] = tuple(free)
        return out, guessed

    def _ask_helpers(self, frame: Frame, cues: dict[str, Cue], results: dict) -> list[ObjectProcess]:
        """Send the frame to every helper that holds objects; the ones asked (a stopped one is started again and its
        objects get the error in ``results``)."""
        busy = [h for h in self._helpers.values() if any(oid in cues for oid in h.objects) and not h.starting]
        if not busy:
            return []
        self._shared.write(frame)
        asked = []
        for helper in busy:
            if helper not in self._helpers.values():
                continue  # closed meanwhile: the helpers were turned off (_all_here)
            try:
                helper.send_estimate(self._shared, frame, {oid: cues[oid] for oid in helper.objects if oid in cues},
                                     self.settings)
                asked.append(helper)
            except HelperStopped as e:
                self._restart(helper, e, results)
        return asked

    def helper_pids(self) -> list[int]:
        """The process ids of the helpers running now (diagnostics, tests)."""
        return [h.pid for h in self._helpers.values() if h.alive()]

    def _stop_helpers(self) -> None:
        for helper in self._helpers.values():
            helper.close()
        self._helpers.clear()
        self._restarting.clear()

    def close(self) -> None:
        """Stop the helper processes (they also end with this process) and free the shared frame."""
        self._stop_helpers()
        self._shared.close()


def _stopped(e: Exception) -> HelperStopped:
    """A helper's failure as the HelperStopped its objects get (a bug in the helper included)."""
    return e if isinstance(e, HelperStopped) else HelperStopped(f"the object helper process failed: {e}")
