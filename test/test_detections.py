"""``~/detections``: the vision_msgs stand-in matches upstream, and ``ros/detections.py`` fills a Detection3DArray
as docs/ros.md says.

Needs the build (`make`): without a full ROS install, vision_msgs is the stand-in ``ros_interfaces/vision_msgs``
(tools/build_standin_msgs.sh). The expected fields below are read off ros-perception/vision_msgs, branch ros2,
release 4.1.1 (commit e77fa2d), vision_msgs/msg/*.msg: name -> the type rosidl's Python reports, in file order.
"""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header

import vision_msgs.msg as vm
from one2any_ros.ros.conversions import pose_to_matrix
from one2any_ros.ros.detections import DetectionInput, detection_array, object_box

UPSTREAM_FIELDS = {
    "BoundingBox2D": {"center": "vision_msgs/Pose2D", "size_x": "double", "size_y": "double"},
    "BoundingBox2DArray": {"header": "std_msgs/Header", "boxes": "sequence<vision_msgs/BoundingBox2D>"},
    "BoundingBox3D": {"center": "geometry_msgs/Pose", "size": "geometry_msgs/Vector3"},
    "BoundingBox3DArray": {"header": "std_msgs/Header", "boxes": "sequence<vision_msgs/BoundingBox3D>"},
    "Classification": {"header": "std_msgs/Header", "results": "sequence<vision_msgs/ObjectHypothesis>"},
    "Detection2D": {"header": "std_msgs/Header", "results": "sequence<vision_msgs/ObjectHypothesisWithPose>",
                    "bbox": "vision_msgs/BoundingBox2D", "id": "string"},
    "Detection2DArray": {"header": "std_msgs/Header", "detections": "sequence<vision_msgs/Detection2D>"},
    "Detection3D": {"header": "std_msgs/Header", "results": "sequence<vision_msgs/ObjectHypothesisWithPose>",
                    "bbox": "vision_msgs/BoundingBox3D", "id": "string"},
    "Detection3DArray": {"header": "std_msgs/Header", "detections": "sequence<vision_msgs/Detection3D>"},
    "LabelInfo": {"header": "std_msgs/Header", "class_map": "sequence<vision_msgs/VisionClass>", "threshold": "float"},
    "ObjectHypothesis": {"class_id": "string", "score": "double"},
    "ObjectHypothesisWithPose": {"hypothesis": "vision_msgs/ObjectHypothesis",
                                 "pose": "geometry_msgs/PoseWithCovariance"},
    "Point2D": {"x": "double", "y": "double"},
    "Pose2D": {"position": "vision_msgs/Point2D", "theta": "double"},
    "VisionClass": {"class_id": "uint16", "class_name": "string"},
    "VisionInfo": {"header": "std_msgs/Header", "method": "string", "database_location": "string",
                   "database_version": "int32"},
}

# RIHS01 type hashes (ROS 2 Iron and later) of the definitions above. They also cover every nested type (Detection3D,
# ObjectHypothesisWithPose, ObjectHypothesis, BoundingBox3D and the std_msgs/geometry_msgs ones), so a match means
# the stand-in is wire- and discovery-compatible with a real vision_msgs. The two values agree with those an
# unrelated public ROS 2 client (Elixir) hard-codes for vision_msgs.
UPSTREAM_HASHES = {
    "Detection3DArray": "RIHS01_793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018",
    "Detection3D": "RIHS01_ddd703be132ab0b69d33121f1bb034132bfbb3b0ac5f9fb1516005ba1c8a265b",
}


def _header(sec=1_700_000_000, nanosec=123_456_789, frame_id="camera_color_optical_frame") -> Header:
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def _T(rotvec, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = t
    return T


# --- the stand-in ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(UPSTREAM_FIELDS))
def test_fields_match_upstream(name):
    cls = getattr(vm, name)
    fields = cls.get_fields_and_field_types()
    assert list(fields) == list(UPSTREAM_FIELDS[name]), f"{name}: field names or order differ from upstream"
    assert fields == UPSTREAM_FIELDS[name]


def test_no_constants_and_no_extra_messages():
    """Upstream's vision_msgs/msg has exactly these 16 messages, none with constants."""
    stand_in = Path(__file__).resolve().parent.parent / "ros_interfaces" / "vision_msgs" / "msg"
    assert sorted(p.stem for p in stand_in.glob("*.msg")) == sorted(UPSTREAM_FIELDS)
    for name in UPSTREAM_FIELDS:
        cls = getattr(vm, name)
        assert not [k for k in vars(type(cls)) if k.isupper() and not k.startswith("_")], f"{name} has constants"


def _share_dir() -> Path | None:
    """share/vision_msgs of the install that provides the imported vision_msgs (venv or /opt/ros/<distro>)."""
    prefixes = [Path(vm.__file__).resolve().parents[5]]  # <prefix>/lib/pythonX.Y/site-packages/vision_msgs/msg
    prefixes += [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates = [p / "share" / "vision_msgs" for p in prefixes]
    return next((c for c in candidates if (c / "msg" / "Detection3DArray.json").is_file()), None)


@pytest.mark.parametrize("name", sorted(UPSTREAM_HASHES))
def test_type_hash_matches_upstream(name):
    share = _share_dir()
    if share is None:
        pytest.skip("no type description JSON (a ROS 2 release before Iron): no type hashes to compare")
    desc = json.loads((share / "msg" / f"{name}.json").read_text())
    hashes = {h["type_name"]: h["hash_string"] for h in desc["type_hashes"]}
    assert hashes[f"vision_msgs/msg/{name}"] == UPSTREAM_HASHES[name]


# --- object_box ----------------------------------------------------------------------------------------------

def object_extent(pts):
    return object_box(pts)[1]


def test_object_box_is_the_middle_and_max_minus_min_per_axis():
    pts = np.array([[0.0, -0.01, 0.2], [0.05, 0.03, 0.1], [-0.02, 0.0, 0.15]])
    centre, size = object_box(pts)
    np.testing.assert_allclose(size, [0.07, 0.04, 0.1], atol=1e-15)
    np.testing.assert_allclose(centre, [0.015, 0.01, 0.15], atol=1e-15)
    assert size.shape == centre.shape == (3,) and size.dtype == centre.dtype == np.float64


def test_object_extent_of_a_box_and_of_one_point():
    rng = np.random.default_rng(0)
    pts = rng.uniform([-0.05, -0.02, -0.1], [0.05, 0.02, 0.1], size=(2000, 3))
    pts = np.vstack([pts, [[-0.05, -0.02, -0.1], [0.05, 0.02, 0.1]]])
    np.testing.assert_allclose(object_extent(pts), [0.1, 0.04, 0.2], atol=1e-12)
    np.testing.assert_array_equal(object_extent(np.array([[1.0, 2.0, 3.0]])), [0.0, 0.0, 0.0])


def test_object_extent_ignores_non_finite_rows_and_refuses_bad_input():
    pts = np.array([[0.0, 0.0, 0.0], [np.nan, 5.0, 5.0], [0.1, 0.2, 0.3], [np.inf, 0.0, 0.0]])
    np.testing.assert_allclose(object_extent(pts), [0.1, 0.2, 0.3])
    for bad in (np.zeros((0, 3)), np.full((2, 3), np.nan), np.zeros((4, 2)), np.zeros(3)):
        with pytest.raises(ValueError):
            object_extent(bad)


# --- detection_array ---------------------------------------------------------------------------------------------

def test_detection_array_fills_every_field():
    header = _header()
    inputs = [
        DetectionInput("one2any_object_mug", _T([0.3, -0.2, 1.1], [0.1, -0.05, 0.72]), 0.875,
                       np.array([0.09, 0.12, 0.1]), np.array([0.01, -0.02, 0.04])),
        DetectionInput("one2any_object_box", _T([-2.5, 0.4, 0.0], [-0.2, 0.1, 1.4]), 0.25, (0.3, 0.2, 0.05),
                       (0.0, 0.0, 0.0)),
    ]
    msg = detection_array(header, inputs)

    assert isinstance(msg, vm.Detection3DArray)
    assert msg.header == header and msg.header is not header
    assert len(msg.detections) == 2
    for det, d in zip(msg.detections, inputs):
        assert det.header == header
        assert det.id == d.child_frame
        assert len(det.results) == 1
        hyp = det.results[0]
        assert hyp.hypothesis.class_id == d.child_frame
        assert hyp.hypothesis.score == d.confidence
        np.testing.assert_allclose(pose_to_matrix(hyp.pose.pose), d.T_camera_object, atol=1e-9)
        assert list(hyp.pose.covariance) == [0.0] * 36  # not estimated
        box = pose_to_matrix(det.bbox.center)  # the box's centre carried by the pose, the pose's orientation
        np.testing.assert_allclose(box[:3, :3], d.T_camera_object[:3, :3], atol=1e-9)
        np.testing.assert_allclose(box[:3, 3], d.T_camera_object[:3, :3] @ d.center_O + d.T_camera_object[:3, 3],
                                   atol=1e-9)
        assert det.bbox.center is not hyp.pose.pose
        assert (det.bbox.size.x, det.bbox.size.y, det.bbox.size.z) == tuple(float(v) for v in d.size_m)


def test_detection_array_headers_are_copies():
    header = _header()
    msg = detection_array(header, [DetectionInput("a", np.eye(4), 1.0, (0.1, 0.1, 0.1), (0, 0, 0)),
                                   DetectionInput("b", np.eye(4), 0.5, (0.1, 0.1, 0.1), (0, 0, 0))])
    msg.detections[0].header.frame_id = "changed"
    header.stamp.sec = 7
    assert msg.header.frame_id == "camera_color_optical_frame"
    assert msg.detections[1].header.frame_id == "camera_color_optical_frame"
    assert msg.header.stamp.sec == 1_700_000_000 and msg.detections[1].header.stamp.sec == 1_700_000_000


def test_empty_list_gives_the_header_and_no_detections():
    header = _header(sec=12, nanosec=34, frame_id="cam1_color_optical_frame")
    msg = detection_array(header, [])
    assert isinstance(msg, vm.Detection3DArray)
    assert msg.header == header
    assert list(msg.detections) == []


def test_detection_array_round_trips_through_cdr():
    from rclpy.serialization import deserialize_message, serialize_message

    msg = detection_array(_header(), [DetectionInput("obj", _T([0.0, math.pi / 2, 0.0], [0.0, 0.0, 0.5]), 0.5,
                                                     (0.25, 0.125, 0.5), (0.01, 0.0, -0.02))])
    back = deserialize_message(serialize_message(msg), vm.Detection3DArray)
    assert back == msg


def test_detection_input_checks_and_freezes_its_arrays():
    T = _T([0.1, 0.2, 0.3], [0.0, 0.0, 1.0])
    d = DetectionInput("obj", T, 1, [0.1, 0.2, 0.3], [0.0, 0.01, 0.0])
    assert d.T_camera_object is not T and d.T_camera_object.dtype == np.float64
    assert isinstance(d.confidence, float) and d.size_m.shape == (3,)
    T[0, 3] = 9.0  # the caller's array is copied
    assert d.T_camera_object[0, 3] == 0.0
    with pytest.raises(ValueError):
        d.T_camera_object[0, 0] = 2.0  # read-only
    with pytest.raises(AttributeError):
        d.confidence = 0.5  # frozen
    for T_bad, size_bad in ((np.eye(3), (0.1, 0.1, 0.1)), (np.full((4, 4), np.nan), (0.1, 0.1, 0.1)),
                            (np.eye(4), (0.1, 0.1)), (np.eye(4), (0.1, -0.1, 0.1)), (np.eye(4), (0.1, np.inf, 0.1))):
        with pytest.raises(ValueError):
            DetectionInput("obj", T_bad, 1.0, size_bad, (0.0, 0.0, 0.0))
    for centre_bad in ((0.0, 0.0), (0.0, np.nan, 0.0)):
        with pytest.raises(ValueError):
            DetectionInput("obj", np.eye(4), 1.0, (0.1, 0.1, 0.1), centre_bad)
