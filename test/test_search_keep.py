"""The global search keeps 50 starts for its finest ICP stage (issue 28: more right poses in the pool at wide
baselines; paired on validation suite v1, docs/validation.md, "More right poses in the pool")."""
import numpy as np

from one2any_ros.core.backends.base import SearchSettings
from one2any_ros.core.estimator import PoseEstimator
from one2any_ros.core.frame import make_view


def test_default_keeps_50_starts():
    assert SearchSettings().icp_keep == 50


def test_the_pool_holds_the_kept_starts():
    """With the default settings the verifier sees 50 grid hypotheses (30 lost right poses at 90-180 deg)."""
    from one2any_ros.data.sample import load_sample_sequence

    frames = load_sample_sequence()["frames"]
    ref, query = frames[0], frames[len(frames) // 2]
    est = PoseEstimator("classic")
    est.set_reference(make_view(ref["rgb"], ref["depth"], ref["mask"], ref["K"],
                                T_cam_obj=np.asarray(ref["T_cam_obj"], np.float64)))
    est.record_pool = True
    est.estimate(make_view(query["rgb"], query["depth"], query["mask"], query["K"]))
    assert est.last_pool.sources.count("grid") == 50
