"""The control node: a bare rclpy node (one parameter, the node's SingleThreadedExecutor, no work) in a process of
its own. The bench makes the same get/set_parameters calls to it as to the one2any node, which shows what the
machine and the client add to a round trip apart from the node.

It runs as ``python -m one2any_ros.ros_tools.bench.control`` (no arguments): a child entry the bench starts, in
its own process so that it has its own interpreter and DDS participant, as the node under test has."""
from __future__ import annotations

import signal
import subprocess
import sys

from one2any_ros.ros_tools.bench.common import NAMESPACE


def control_main() -> int:
    """Spin the bare control node under the bench's namespace until Ctrl-C (SIGINT) or a shutdown."""
    from rclpy.executors import SingleThreadedExecutor

    from one2any_ros.ros_tools.process_node import process_node

    with process_node("control", ["one2any_bench_control", "--ros-args", "-r", f"__ns:={NAMESPACE}"]) as node:
        node.declare_parameter("min_confidence", 0.05)
        ex = SingleThreadedExecutor()
        ex.add_node(node)
        ex.spin()
    return 0


def start_control() -> subprocess.Popen:
    """The bare control node in its own process: what the machine adds to a round trip."""
    from one2any_ros.ros.transport import transport_env

    return subprocess.Popen([sys.executable, "-m", "one2any_ros.ros_tools.bench.control"], env=transport_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop_control(control: subprocess.Popen) -> None:
    """Stop the control node: SIGINT, and kill it if it has not exited within 10 s."""
    control.send_signal(signal.SIGINT)
    try:
        control.wait(10)
    except subprocess.TimeoutExpired:
        control.kill()


if __name__ == "__main__":  # the child entry start_control starts
    sys.exit(control_main())
