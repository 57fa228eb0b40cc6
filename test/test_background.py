"""The network's hypotheses on a thread of their own beside the classic grid (core/background.py): the same
hypotheses as one after the other, errors raised in the caller, and no thread where the process has one core."""
import threading

import numpy as np
import pytest

from one2any_ros.core import background
from one2any_ros.core.backends import one2any as one2any_backend


def test_a_background_call_returns_its_value_and_raises_its_error_in_the_caller():
    seen = []
    call = background.BackgroundCall(lambda x: seen.append(threading.current_thread()) or 2 * x, 21)
    assert call.result() == 42 and seen[0] is not threading.current_thread()

    def fails():
        raise ValueError("no depth")

    with pytest.raises(ValueError, match="no depth"):
        background.BackgroundCall(fails).result()


def test_the_queries_beside_a_background_call_teach_the_thread_choice_nothing(monkeypatch):
    """While the network runs beside the ICP, the KD-tree's query times say nothing about the machine's load: the
    thread choice does not learn from them; after it (result or error) it does again."""
    from one2any_ros.core import nearest, query_threads

    if nearest._PyKDTree is None or query_threads.set_omp_threads is None:
        pytest.skip("pykdtree with libgomp not installed: cKDTree's workers are not chosen by measurement")
    monkeypatch.setattr(query_threads, "_share", 2)
    recorded = []

    class Recording(query_threads.FixedThreads):
        def record(self, key, queries, threads, seconds):
            recorded.append(threads)

    monkeypatch.setattr(query_threads, "choice", Recording(one=False))
    monkeypatch.setattr(query_threads, "set_omp_threads", lambda n: None)
    tree = nearest.KDTree(np.random.default_rng(0).random((500, 3)))
    x = np.random.default_rng(1).random((query_threads.PARALLEL_MIN_QUERIES, 3))
    gate = threading.Event()
    call = background.BackgroundCall(gate.wait)
    tree.query(x)
    gate.set()
    call.result()
    tree.query(x)

    def fails():
        raise RuntimeError("decoder")

    failing = background.BackgroundCall(fails)
    tree.query(x)
    with pytest.raises(RuntimeError):
        failing.result()
    tree.query(x)
    assert recorded == [2, 2] and not query_threads.busy_beside()


def test_overlap_only_pays_with_more_than_one_core(monkeypatch):
    monkeypatch.setattr(background.query_threads, "_share", 1)
    assert not background.overlap_pays()
    monkeypatch.setattr(background.query_threads, "_share", 2)
    assert background.overlap_pays()


@pytest.mark.usefixtures("one_torch_thread")
def test_the_network_beside_the_grid_proposes_the_same_hypotheses(monkeypatch):
    """A global search's pool with the network on a second thread is the one it gets with the network first, the grid
    after: every hypothesis, source and ROC value the same (nothing the two write is shared)."""
    from one2any_ros.core.estimator import PoseEstimator
    from one2any_ros.core.frame import make_view
    from one2any_ros.data.sample import load_sample_sequence

    frames = load_sample_sequence()["frames"]
    est = PoseEstimator("one2any")
    f0, f1 = frames[0], frames[2]
    ref = est.set_reference(make_view(f0["rgb"], f0["depth"], f0["mask"], f0["K"], T_cam_obj=f0["T_cam_obj"]))
    q = est._context(make_view(f1["rgb"], f1["depth"], f1["mask"], f1["K"]))
    threads = []
    network = one2any_backend.One2AnyBackend.anchored_hypotheses

    def recorded(self, *args):
        threads.append(threading.current_thread())
        return network(self, *args)

    monkeypatch.setattr(one2any_backend.One2AnyBackend, "anchored_hypotheses", recorded)
    props = {}
    for overlap in (False, True):
        monkeypatch.setattr(one2any_backend, "overlap_pays", lambda overlap=overlap: overlap)
        props[overlap] = est.backend.propose(ref, q, est.settings.search, ref.diameter)
    assert threads[0] is threading.current_thread() and threads[1] is not threading.current_thread()
    a, b = props[False], props[True]
    assert len(a.T_query_C) > 10 and a.sources == b.sources
    np.testing.assert_array_equal(a.T_query_C, b.T_query_C)
    np.testing.assert_array_equal(a.roc_pred, b.roc_pred)
    assert {"network", "ransac", "grid"} <= set(b.timings_ms)
