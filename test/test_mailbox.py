"""The node's mailbox (ros/mailbox.py) without rclpy: latest wins, jobs before frames, stamp order with a
reset, futures answered, a stop that ends the worker. Threads wait with generous timeouts only."""
import concurrent.futures
import sys
import threading

import pytest

from one2any_ros.ros.mailbox import Job, Mailbox

MS = 1_000_000
WAIT_S = 10.0  # generous: only a broken mailbox ever waits this long


def _put(box: Mailbox, stamp_ms: int):
    return box.put_frame(stamp_ms * MS, lambda seq: (stamp_ms, seq))


def test_importing_needs_no_rclpy():
    import subprocess

    code = "import sys, one2any_ros.ros.mailbox; assert 'rclpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_latest_wins_and_drops_are_counted():
    box = Mailbox()
    first = _put(box, 100)
    assert first.accepted and not first.replaced and first.dropped == 0 and not first.reset
    second = _put(box, 133)  # the worker has not taken the first: it is replaced
    assert second.accepted and second.replaced and second.dropped == 1
    assert box.next(timeout=WAIT_S) == (133, 2)  # the newest, numbered in arrival order
    assert box.seq == 2 and box.latest() == (133, 2)  # kept for ~/set_reference after the worker took it
    assert box.next(timeout=0.01) is None  # the slot is empty now


def test_stamp_order_and_reset():
    box = Mailbox(stamp_reset_s=3.0)
    _put(box, 10_000)
    late = _put(box, 9_990)  # an older set completed after a newer one: dropped, never built
    assert not late.accepted and late.dropped == 1 and late.back_ns == 10 * MS and not late.reset
    assert box.last_taken_ns == 10_000 * MS and box.seq == 1
    assert _put(box, 10_020).accepted and box.last_taken_ns == 10_020 * MS
    back = _put(box, 10_020 - 5_000)  # 5 s back: a restarted stream (a bag replayed again) is followed
    assert back.accepted and back.reset and back.back_ns == 5_000 * MS
    assert box.last_taken_ns == 5_020 * MS
    assert _put(box, 5_020).accepted  # the same stamp again is not older: taken


def test_a_late_frame_is_never_built():
    box = Mailbox()
    built = []
    box.put_frame(2 * MS, lambda seq: built.append(seq) or seq)
    box.put_frame(1 * MS, lambda seq: built.append(seq) or seq)
    assert built == [1]


def test_jobs_come_before_frames_in_order_and_answer_their_futures():
    box = Mailbox()
    _put(box, 1)
    f1 = box.submit(lambda: 41 + 1)
    f2 = box.submit(lambda: 1 / 0)
    items = [box.next(timeout=WAIT_S) for _ in range(3)]
    assert isinstance(items[0], Job) and isinstance(items[1], Job) and items[2] == (1, 1)
    for job in items[:2]:
        job.run()
    assert isinstance(f1, concurrent.futures.Future) and f1.result(timeout=WAIT_S) == 42
    assert isinstance(f2.exception(timeout=WAIT_S), ZeroDivisionError)


def test_a_base_exception_escapes_the_job_and_leaves_its_future_to_the_caller():
    box = Mailbox()

    def die():
        raise KeyboardInterrupt

    fut = box.submit(die)
    job = box.next(timeout=WAIT_S)
    with pytest.raises(KeyboardInterrupt):
        job.run()
    assert not fut.done()  # the node answers it with "the worker died"


def test_a_future_factory_of_the_callers_choice():
    class MyFuture(concurrent.futures.Future):
        pass

    box = Mailbox(future_factory=MyFuture)
    assert isinstance(box.submit(lambda: None), MyFuture)


def test_a_worker_thread_sees_every_job_and_the_newest_frame_then_stops():
    box = Mailbox()
    seen, last_seen, done = [], threading.Event(), threading.Event()

    def worker():
        while (item := box.next()) is not None:
            if isinstance(item, Job):
                item.run()
                continue
            seen.append(item)
            if item[0] == 50:
                last_seen.set()
        done.set()

    threading.Thread(target=worker, daemon=True).start()
    futures = [box.submit(lambda i=i: i * i) for i in range(20)]
    for stamp in range(1, 51):
        _put(box, stamp)
    assert [f.result(timeout=WAIT_S) for f in futures] == [i * i for i in range(20)]
    assert last_seen.wait(WAIT_S)  # the newest frame is always taken (latest wins: never lost)
    assert seen[-1] == (50, 50)
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)  # in stamp order, some dropped on the way
    box.stop()
    box.stop()  # idempotent
    assert done.wait(WAIT_S) and box.stopped
    assert box.next(timeout=WAIT_S) is None  # a restarted worker would end at once too


def test_a_restarted_worker_takes_over_the_waiting_work():
    """The node's watchdog starts a new thread on the same mailbox: nothing queued is lost."""
    box = Mailbox()
    fut = box.submit(lambda: "answered")
    _put(box, 7)
    # no worker yet (the old one died); a new one empties the mailbox
    results = []
    t = threading.Thread(target=lambda: results.extend([box.next(timeout=WAIT_S), box.next(timeout=WAIT_S)]))
    t.start()
    t.join(WAIT_S)
    job, frame = results
    job.run()
    assert fut.result(timeout=WAIT_S) == "answered" and frame == (7, 1)


def test_wait_for_a_frame_after_a_given_one():
    box = Mailbox()
    assert box.latest() is None and box.wait_frame_after(0, 0.01) is None  # none comes: None after the timeout
    _put(box, 1)
    seq = box.seq
    got = []
    t = threading.Thread(target=lambda: got.append(box.wait_frame_after(seq, WAIT_S)))
    t.start()
    _put(box, 2)
    t.join(WAIT_S)
    assert got == [(2, 2)]
    assert box.wait_frame_after(0, 0.01) == (2, 2)  # already newer: at once


def test_a_job_given_up_on_is_withdrawn_or_its_late_result_dropped():
    box = Mailbox()
    first, second = box.submit(lambda: 1), box.submit(lambda: 2)
    assert box.cancel(second) and not box.cancel(second)  # withdrawn once; the worker never sees it
    job = box.next()
    assert job.future is first and not box.cancel(first)  # taken already: not withdrawn
    first.set_exception(TimeoutError("given up"))  # the caller's deadline passed while it ran
    job.run()  # its late result does not overwrite what the caller was told
    assert isinstance(first.exception(), TimeoutError)
    assert box.next(timeout=0.01) is None
