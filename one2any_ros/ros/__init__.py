"""The ROS 2 shell around the library (with ros_tools/, the only places that import rclpy; docs/architecture.md).

- ``node``: the ``one2any`` node and ``main`` (``one2any_node`` / ``one2any node``); ``mailbox``: the
  worker's latest-wins mailbox and job queue (no rclpy); ``object_table``: the node's objects and their records;
  ``references``: the reference services on that table; ``outputs``: the pose publishers; ``cue_input`` and
  ``cue_buffer``: masks and boxes that come on their own topics
- ``conversions``: Image/CameraInfo/Pose <-> arrays; ``sync``: approximate-time synchronizer
- ``tf``: /tf broadcaster; ``diagnostics``: counters and the /diagnostics status; ``params``: parameters
- ``detections``: vision_msgs Detection3DArray; ``transport``: the shipped Fast DDS profile

The graph tools (player, harness, bench, demo graph) live beside this package in ``ros_tools/``.
"""
