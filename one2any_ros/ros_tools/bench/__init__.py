"""Soak/overload benchmark of the node (``one2any bench --ros [--duration 60]``): three processes on one
machine, over real DDS with the shipped transport profile.

- the node (``NodeProcess``) with the package defaults (config/one2any.yaml values), the backend asked for;
- a synthetic camera (``camera.py``, its own process): the bundled sample's 640x480 rgb8 /
  16UC1 / mono8 / CameraInfo frames, prebuilt, published at a fixed rate with fresh stamps. The object turns
  back and forth (frames 1..9..2, each held ``--hold`` s: 6.7 deg per step, 13 deg/s at the default 0.5 s),
  so a node that keeps up tracks, and frame_id = ``sample_<k>`` names the ground truth of every pose;
- this process: sets the reference (frame 0, ground-truth pose), measures the node's processing time on
  frames that arrive one at a time (calibration), then runs two phases of ``duration`` s each: the camera
  at 30 Hz and at 4x the calibrated processing rate. Throughout, a client does what a cell controller
  does: every second a get_parameters and a set_parameters call, and a re-capture (``~/clear_reference``
  then at once ``~/set_reference`` on the latest frame), timing each round trip.

Reported per phase: poses per second, stamp-to-pose latency (header stamp -> PoseStamped received here;
median/p90/p99/max) and the node's own latency_ms (frame complete -> published), frames sent / dropped by
the node's latest-wins mailbox (/diagnostics dropped_frames) / otherwise without a pose, service round
trips, the node's resident memory (start, end, peak), and pose errors against the ground truth (the
reference in effect after each re-capture is known from the stamp the node reports). Targets (issue #6):
p99 latency < 3x the median processing time, memory growth < 50 MB, clear_reference and parameter calls
answered within 200 ms. Everything goes to ``<out>/ros_bench.json`` (docs/benchmarks.md is generated from it
by tools/make_benchmarks_doc.py).

``--objects N`` (``run_objects_bench``) measures what several objects cost instead: the camera plays a rendered
scene (``data.multi_scene.multi_object_scene``: four held-out test objects' places, the first N filled, mono16 label image) and
the node holds N references (one per label, ground-truth poses). Frames one at a time (1 Hz) give the per-frame
processing cost (the node's latency_ms of a frame's last object); then ``duration`` s at 30 Hz give poses per second
per object and stamp-to-estimate latency. The same objects at the same places for every N, so the costs compare;
``<out>/ros_bench_objects_<N>.json``.

The modules, one job each: ``common`` (names, statistics, the node under test), ``camera`` (the camera process),
``control`` (the bare control node's process), ``rig`` (what measures: memory, the service prober, the ground
truth), ``soak`` (the soak/overload run), ``objects`` (the several-objects run), ``report`` (their terminal
summaries) and ``run`` (the entry of ``one2any bench --ros``; the CLI in apps/cli.py holds its only parser).
"""
