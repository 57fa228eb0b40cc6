"""One rclpy node as the whole of a process (the bag player, the bench's camera and control node): the same
start and the same clean end for every such ``main``, as ros2/demos write it."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager


@contextmanager
def process_node(node_name: str, init_args: Sequence[str]) -> Iterator:
    """rclpy initialised with ``init_args`` (argv style: the program name, then ``--ros-args ...``) and the
    shipped transport, and one node ``node_name``. Ctrl-C and an external shutdown end the block quietly; the
    node is destroyed and rclpy shut down whatever happened.

    Args:
        node_name: the node's name.
        init_args: what ``rclpy.init(args=...)`` gets.

    Yields:
        the rclpy node.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException

    from one2any_ros.ros.transport import apply_default_transport

    apply_default_transport()
    rclpy.init(args=list(init_args))
    node = rclpy.create_node(node_name)
    try:
        yield node
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
