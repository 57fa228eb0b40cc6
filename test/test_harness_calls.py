"""The test client's service calls (ros_tools/harness.py): an idempotent service whose answer was lost is asked
again (a server that has just started may take a request before its answer can reach the client: ros2/rclpy issue
1181); any other call waits for its one answer. No middleware here: a stand-in with rclpy.Client's methods."""
import threading

import pytest
from rclpy.task import Future

from one2any_ros.ros_tools.harness import GraphClient


class _Client:
    """rclpy.Client's wait_for_service / call_async / remove_pending_request / srv_name; the first ``lose`` requests
    are never answered, the next ones at once."""

    srv_name = "/test/service"

    def __init__(self, lose: int) -> None:
        self.lose, self.sent, self.removed = lose, [], []

    def wait_for_service(self, timeout_sec: float) -> bool:
        return True

    def call_async(self, request) -> Future:
        self.sent.append(request)
        future = Future()
        if len(self.sent) > self.lose:
            threading.Timer(0.01, future.set_result, args=(f"answer {len(self.sent)}",)).start()
        return future

    def remove_pending_request(self, future: Future) -> None:
        self.removed.append(future)


def _caller() -> GraphClient:
    return object.__new__(GraphClient)  # _call needs no node: the client is given


def test_a_lost_answer_is_asked_for_again():
    client = _Client(lose=1)
    assert _caller()._call(client, "req", 5.0, resend_s=0.2) == "answer 2"
    assert client.sent == ["req", "req"] and len(client.removed) == 1


def test_a_call_without_resend_waits_for_its_one_answer():
    client = _Client(lose=1)
    with pytest.raises(TimeoutError, match="did not answer within 0.3 s"):
        _caller()._call(client, "req", 0.3)
    assert client.sent == ["req"]


def test_resending_stops_at_the_deadline():
    client = _Client(lose=100)
    with pytest.raises(TimeoutError):
        _caller()._call(client, "req", 0.5, resend_s=0.2)
    assert 2 <= len(client.sent) <= 4
