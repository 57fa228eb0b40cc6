"""The ROS 2 shell around the library (the only place that imports rclpy; docs/architecture.md, Modules).

- ``node``: the ``one2any`` node and ``main`` (``one2any_node`` / ``one2any node``)
- ``conversions``: Image/CameraInfo/Pose <-> arrays; ``sync``: approximate-time synchronizer
- ``tf``: /tf broadcaster; ``diagnostics``: counters and the /diagnostics status; ``params``: parameters
- ``transport``: the shipped Fast DDS profile; ``player``: rosbag2 replay; ``harness``: a node process and
  a client for tests and the demo; ``demo_graph``: the ROS demo
"""
