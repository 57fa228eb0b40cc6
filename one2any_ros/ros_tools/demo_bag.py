"""The demos' recording: frames (rgb, depth, mask or label image, K) written to an MCAP rosbag2 with camera-driver
topic names, and read back as the player sends them (ros_tools/player.py)."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Container

import numpy as np

TOPICS = {"rgb": "/camera/color/image_raw", "depth": "/camera/aligned_depth_to_color/image_raw",
          "mask": "/camera/color/object_mask", "camera_info": "/camera/color/camera_info"}
FRAME_ID = "camera_color_optical_frame"
BAG_T0_NS = 1_700_000_000 * 10**9


def _mask_image(f: dict) -> tuple[np.ndarray, str, int]:
    """What the mask topic carries: the frame's label image (mono16 / mono8, as a segmenter publishes it) when it
    has one, else its object mask as mono8 0/255; (array, encoding, bytes per pixel)."""
    labels = f.get("labels")
    if labels is None:
        return (np.asarray(f["mask"]) > 0).astype(np.uint8) * 255, "mono8", 1
    labels = np.asarray(labels)
    if labels.dtype == np.uint16:
        return labels.astype("<u2"), "mono16", 2
    return labels.astype(np.uint8), "mono8", 1


def write_sample_bag(path: Path, frames: list[dict], *, period_s: float = 1.0, t0_ns: int = BAG_T0_NS,
                     mask_frames: Container[int] | None = None) -> Path:
    """Record ``frames`` (rgb, depth m, mask or labels, K) as rgb8 / 16UC1 mm / mono8 or mono16 / CameraInfo to an
    MCAP rosbag2, serialized with rosbags' ROS 2 Kilted typestore; header stamps = bag times, ``period_s`` apart.
    ``mask_frames``: the frames whose mask is recorded (None: every frame's; a workcell has one for the reference)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(getattr(Stores, "ROS2_KILTED", Stores.ROS2_JAZZY))
    T = ts.types
    shutil.rmtree(path, ignore_errors=True)

    def header(t):
        return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9),
                                        frame_id=FRAME_ID)

    def image(t, arr, enc, bpp):
        return T["sensor_msgs/msg/Image"](header=header(t), height=arr.shape[0], width=arr.shape[1], encoding=enc,
                                          is_bigendian=0, step=arr.shape[1] * bpp,
                                          data=np.frombuffer(np.ascontiguousarray(arr).tobytes(), np.uint8))

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {k: w.add_connection(topic, "sensor_msgs/msg/CameraInfo" if k == "camera_info" else "sensor_msgs/msg/Image",
                                     typestore=ts) for k, topic in TOPICS.items()}
        for i, f in enumerate(frames):
            t = t0_ns + int(round(i * period_s * 1e9))
            h, wd = f["depth"].shape
            K = np.asarray(f["K"], np.float64)
            msgs = {
                "camera_info": T["sensor_msgs/msg/CameraInfo"](
                    header=header(t), height=h, width=wd, distortion_model="plumb_bob", d=np.zeros(5), k=K.ravel(),
                    r=np.eye(3).ravel(), p=np.hstack([K, np.zeros((3, 1))]).ravel(), binning_x=0, binning_y=0,
                    roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)),
                "mask": image(t, *_mask_image(f)),
                "depth": image(t, np.round(np.nan_to_num(f["depth"]) * 1000).astype("<u2"), "16UC1", 2),
                "rgb": image(t, np.asarray(f["rgb"], np.uint8), "rgb8", 3),
            }
            if mask_frames is not None and i not in mask_frames:
                del msgs["mask"]
            for k, m in msgs.items():
                w.write(conns[k], t, ts.serialize_cdr(m, m.__msgtype__))
    return path



@dataclass
class Recording:
    """The recorded frames as the player sends them: every message, and each frame's messages and stamp."""

    bag: Path
    messages: list
    by_frame: dict[int, list]
    stamp_of: dict[int, int]

    def later(self) -> list:
        """The messages of every frame after the reference frame 0, in order."""
        return [m for i in sorted(self.by_frame) if i > 0 for m in self.by_frame[i]]

    def later_frames(self) -> list[int]:
        return [i for i in sorted(self.by_frame) if i > 0]



def record(frames: list[dict], out_dir: Path, period_s: float, mask_frames: Container[int] | None = None) -> Recording:
    """Write the frames to ``out_dir/sample_bag`` and read them back (the player replays what was recorded)."""
    from one2any_ros.ros_tools.player import read_bag

    bag = write_sample_bag(out_dir / "sample_bag", frames, period_s=period_s, mask_frames=mask_frames)
    messages = read_bag(bag)
    by_frame: dict[int, list] = {}
    for m in messages:
        by_frame.setdefault(int(round((m.t_ns - BAG_T0_NS) / (period_s * 1e9))), []).append(m)
    print(f"recorded {len(frames)} frames ({len(messages)} messages) to {bag} (MCAP)")
    return Recording(bag, messages, by_frame, {i: ms[0].t_ns for i, ms in by_frame.items()})

