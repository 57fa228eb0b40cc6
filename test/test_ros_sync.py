"""The node's pure helpers without a graph: the synchronizer, the input monitor, the transport switch,
the parameter table (and config/one2any.yaml), the reference path and the TF fallback."""
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from one2any_ros.ros import params, sync, transport
from one2any_ros.ros.diagnostics import KEYS, NodeStats

MS = 1_000_000
REPO = Path(__file__).resolve().parent.parent


class Collector:
    def __init__(self):
        self.sets = []

    def __call__(self, *msgs):
        self.sets.append(msgs)


def make(n=4, slop_ms=50, queue=5):
    out = Collector()
    return sync.ApproximateSync(n, slop_s=slop_ms / 1000, queue_size=queue, callback=out), out


def test_exact_stamps_match_once_every_input_arrived():
    s, out = make()
    for i in range(3):
        assert not s.add(i, 1000 * MS, f"m{i}")
    assert s.add(3, 1000 * MS, "m3")
    assert out.sets == [("m0", "m1", "m2", "m3")]
    assert s.pending() == [0, 0, 0, 0]


def test_stamps_within_slop_match_outside_do_not():
    s, out = make(n=2, slop_ms=50)
    s.add(0, 1000 * MS, "a")
    assert not s.add(1, 1051 * MS, "late")  # 51 ms > slop
    assert s.add(1, 1049 * MS, "b")
    assert out.sets == [("a", "b")]


def test_a_frame_is_complete_only_with_camera_info_of_its_window():
    s, out = make(n=4, slop_ms=20)
    for i in range(3):
        s.add(i, 2000 * MS, i)
    s.add(3, 1500 * MS, "old_info")  # camera_info of another frame: no match
    assert out.sets == []
    s.add(3, 2010 * MS, "info")
    assert out.sets == [(0, 1, 2, "info")]


def test_best_set_is_the_tightest_and_older_messages_are_discarded():
    s, out = make(n=2, slop_ms=50)
    s.add(0, 1000 * MS, "a1000")
    s.add(0, 1030 * MS, "a1030")
    s.add(1, 1028 * MS, "b1028")  # both a's are within slop: the closer one wins
    assert out.sets == [("a1030", "b1028")]
    assert s.pending() == [0, 0]  # a1000 is older than the matched set: dropped


def test_out_of_order_arrival_and_interleaved_frames():
    s, out = make(n=3, slop_ms=10)
    s.add(0, 100 * MS, "r100")
    s.add(0, 133 * MS, "r133")
    s.add(1, 133 * MS, "d133")
    s.add(1, 100 * MS, "d100")  # arrives late
    s.add(2, 133 * MS, "m133")
    assert out.sets == [("r133", "d133", "m133")]
    s.add(2, 100 * MS, "m100")  # a straggler never completes the older frame
    assert out.sets == [("r133", "d133", "m133")]


def test_queue_is_bounded_and_slop_changes_at_runtime():
    s, out = make(n=2, slop_ms=5, queue=3)
    for t in range(10):
        s.add(0, t * 100 * MS, t)
    assert s.pending() == [3, 0]
    assert not s.add(1, 920 * MS, "b")
    s.slop_s = 0.05
    assert s.add(1, 910 * MS, "b2")
    assert out.sets == [(9, "b2")]


def test_monitor_names_the_missing_input_and_unsynchronized_stamps():
    m = sync.InputMonitor(["rgb", "depth", "mask", "camera_info"])
    assert m.diagnose(window_s=2, slop_s=0.05, now=100.0) is None  # nothing arrives: not this monitor's call
    for n in ("rgb", "depth", "mask"):
        m.arrived(n, 5 * 10**9, now=100.0)
    reason, msg = m.diagnose(window_s=2, slop_s=0.05, now=100.5)
    assert reason == "missing_camera_info" and "camera_info" in msg
    m.arrived("camera_info", 9 * 10**9, now=100.6)
    reason, msg = m.diagnose(window_s=2, slop_s=0.05, now=100.7)
    assert reason == "unsynchronized_inputs" and "sync_slop" in msg
    m.completed(now=100.8)
    assert m.diagnose(window_s=2, slop_s=0.05, now=101.0) is None


def test_message_filters_is_used_only_when_real(monkeypatch):
    monkeypatch.setitem(sys.modules, "message_filters", types.ModuleType("message_filters"))  # an empty namespace package
    assert sync.message_filters_module() is None
    fake = types.ModuleType("message_filters")
    fake.Subscriber = fake.ApproximateTimeSynchronizer = object
    monkeypatch.setitem(sys.modules, "message_filters", fake)
    assert sync.message_filters_module() is fake


def test_transport_profile_is_set_only_when_the_user_chose_none():
    env = {}
    assert transport.apply_default_transport(env) == str(transport.PROFILE_PATH)
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(transport.PROFILE_PATH)
    for key in transport.USER_SETTINGS:
        env = {key: "user-choice"}
        assert transport.apply_default_transport(env) is None and env == {key: "user-choice"}
    assert transport.apply_default_transport({"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) is None


def test_shipped_profile_is_valid_fast_dds_xml():
    root = ET.parse(transport.PROFILE_PATH).getroot()
    ns = {"d": "http://www.eprosima.com"}
    shm = [t for t in root.iterfind(".//d:transport_descriptor", ns) if t.findtext("d:type", namespaces=ns) == "SHM"]
    assert shm and int(shm[0].findtext("d:segment_size", namespaces=ns)) >= 3 * 640 * 480 * 4  # a few RGB-D frames
    part = root.find(".//d:participant", ns)
    assert part.get("is_default_profile") == "true"


def test_parameter_table_matches_config_yaml():
    cfg = yaml.safe_load((REPO / "config" / "one2any.yaml").read_text())
    flat = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[prefix + k] = v
    walk(cfg["/**"]["ros__parameters"])
    assert set(flat) == {p.name for p in params.PARAMS}
    for p in params.PARAMS:
        assert flat[p.name] == p.default, p.name
        assert type(flat[p.name]) is type(p.default), f"{p.name}: yaml type differs (ROS parameters are typed)"


@pytest.mark.parametrize("name", ["two_cameras.yaml", "two_objects.yaml"])
def test_example_configs_set_only_declared_parameters_with_their_types(name):
    cfg = yaml.safe_load((REPO / "config" / name).read_text())
    for node_params in cfg.values():
        for key, value in node_params["ros__parameters"].items():
            assert key in params.BY_NAME, f"{name}: {key} is not a parameter"
            assert type(value) is type(params.BY_NAME[key].default), f"{name}: {key} has the wrong type"
    if name == "two_objects.yaml":
        s = params.updated_settings(params.NodeSettings(), cfg["/**"]["ros__parameters"])
        assert (s.object_frame_prefix, s.max_objects) == ("obj_", 2)


def test_every_parameter_has_a_descriptor_and_estimator_keys_are_valid():
    base = params.NodeSettings()
    for p in params.PARAMS:
        d = params.descriptor(p)
        assert d.description and d.type != 0
        if p.estimator_key:
            params.updated_settings(base, {p.name: p.default})  # with_updates accepts the key
    assert params.BY_NAME["checkpoint"].read_only and params.BY_NAME["reference_path"].read_only
    assert not params.BY_NAME["backend"].read_only


def test_updated_settings_swaps_whole_and_validates():
    base = params.NodeSettings()
    new = params.updated_settings(base, {"min_confidence": 0.5, "search.num_start_rotations": 7,
                                         "refine_thresholds": [0.1, 0.05], "use_sim_time": True})
    assert base.estimator.min_confidence == 0.05  # the old snapshot is untouched (frozen)
    assert new.estimator.min_confidence == 0.5 and new.estimator.search.num_start_rotations == 7
    assert new.estimator.refine_thresholds == (0.1, 0.05)
    with pytest.raises(ValueError, match="backend"):
        params.updated_settings(base, {"backend": "bogus"})
    with pytest.raises(ValueError, match="min_depth"):
        params.updated_settings(base, {"min_depth": 5.0})
    with pytest.raises(ValueError, match="refine_thresholds"):
        params.updated_settings(base, {"refine_thresholds": []})
    with pytest.raises(ValueError, match="max_image_width"):
        params.updated_settings(base, {"max_image_width": 100})
    assert params.updated_settings(base, {"max_image_width": 0}).max_image_width == 0


def test_default_reference_path_is_per_node_full_name(monkeypatch, tmp_path):
    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    a, b, c = (params.default_reference_path(n) for n in ("/one2any", "/cam1/one2any", "/cam2/one2any"))
    assert len({a, b, c}) == 3 and all(p.parent == tmp_path / "one2any" for p in (a, b, c))
    assert b.name == "cam1.one2any.reference.zip"


def test_stats_status_has_exactly_the_design_keys():
    st = NodeStats(window_s=5.0)
    st.frame_received(12.0)
    st.frame_dropped()
    st.pose_published(40.0, 500, 0.9)
    status = st.status("/cam1/one2any", reference=True, backend="classic", device="cpu")
    values = {kv.key: kv.value for kv in status.values}
    assert tuple(values) == KEYS
    assert status.name == "/cam1/one2any"
    assert values["dropped_frames"] == "1" and values["reference"] == "set" and values["inliers"] == "500"
    st.failure("empty_mask", "mask is empty")
    values = {kv.key: kv.value for kv in st.status("n", reference=False, backend="b", device="d").values}
    assert values["last_failure"].startswith("empty_mask") and values["reference"] == "none"


def test_tf_falls_back_to_our_broadcaster(monkeypatch):
    from one2any_ros.ros import tf

    monkeypatch.setitem(sys.modules, "tf2_ros", types.ModuleType("tf2_ros"))  # empty namespace package
    assert tf._tf2_ros() is None
    msg_type = tf.tf_message_type()
    assert msg_type is not None, "tf2_msgs is missing: run `make` (tools/build_tf2_msgs.sh)"
    assert msg_type.__module__.startswith("tf2_msgs") and "transforms" in msg_type.get_fields_and_field_types()


def test_an_objects_state_follows_its_poses_and_failures():
    """detected (set, or a global search's pose) -> tracking (a pose from the last one) -> lost (the frame that lost
    it) -> searching (the frames after) -> detected again; a failure that is not a frame's changes nothing."""
    from one2any_ros.ros.diagnostics import NodeStats

    s = NodeStats()
    s.state = "detected"  # ~/set_reference
    states = []
    for event in ("track", "track", "fail", "fail", "global", "track", "service_fail", "fail"):
        if event == "fail":
            s.failure("low_confidence", "frame stamped 1.000000000 s: no trustworthy pose")
        elif event == "service_fail":
            s.failure("bad_timeout", "timeout_s inf", frame=False)
        else:
            s.pose_published(10.0, 100, 0.9, event)
        states.append(s.state)
    assert states == ["tracking", "tracking", "lost", "searching", "detected", "tracking", "tracking", "lost"]
    values = {kv.key: kv.value for kv in s.object_status("/one2any/obj").values}
    assert values["state"] == "lost" and list(values) == ["confidence", "inliers", "rate_hz", "last_failure", "state"]
