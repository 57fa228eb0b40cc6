"""Tools that drive a ROS graph around the node, kept beside the runtime in ``ros/`` rather than in it:
``player`` (rosbag2 / BOP replay), ``harness`` (a node process and a client, for tests and the demo),
``bench`` (the node's latency and soak benchmark) and the ROS demo: ``demo_graph`` (the graph and the one-object
demo), ``demo_multi`` (several objects), ``demo_bag`` (its recording), ``demo_report`` (its numbers).
"""
