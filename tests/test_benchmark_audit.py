"""benchmarks/audit.py runs end to end on a tiny set (one short video of each face in the media): planted
errors within the budget, both rankings scored, the default threshold's figures and the random-sample runs.
The figures themselves are in benchmarks/RESULTS.md, not asserted here."""
import pandas as pd
import pytest

from benchmarks.audit import KINDS, run, score_ranking

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_scoring_counts_each_planted_stretch_once_and_ranks_by_score():
    planted = [{"video": "v", "task": "expr", "kind": "swap", "start_frame": 10, "end_frame": 29},
               {"video": "v", "task": "expr", "kind": "swap", "start_frame": 100, "end_frame": 139}]
    ranking = pd.DataFrame([("v", "expr", 12, 29, 0.9), ("v", "expr", 10, 25, 0.8), ("v", "expr", 50, 60, 0.7),
                            ("v", "expr", 100, 140, 0.6), ("w", "expr", 100, 140, 0.95)],
                           columns=["video", "task", "start_frame", "end_frame", "score"])
    s = score_ranking(ranking, planted, "expr")
    # ranked: w (miss), v 12-29 (hit), v 10-25 (duplicate: miss), v 50-60 (miss), v 100-140 (hit)
    assert (s["planted"], s["suggested"], s["precision_at_k"], s["recall_all"]) == (2, 5, 0.5, 1.0)
    assert s["average_precision"] == pytest.approx((1 / 2 + 2 / 5) / 2)


def test_the_benchmark_runs_on_a_tiny_set(tmp_path, media_dir):
    results = run(tmp_path, media_dir, videos=11, frames=90, folds=3, epochs=3, seed=0, budget=0.1)
    assert (results["videos"], results["frames"]) == (11, 990) and results["planted"] > 0
    assert all(0 < share <= 0.1 for share in results["planted_share"].values())
    for name in ("cleanlab", "audit"):
        for task, kinds in KINDS.items():
            ap = results[name][task]["average_precision"]
            assert ap is None or 0 <= ap <= 1
            assert results[name][task]["planted"] == sum(results[name][f"{task}/{k}"]["planted"] for k in kinds)
    assert set(results["audit"]["default_threshold"]) >= {"threshold", "expected_precision", "measured_precision"}
    assert len(results["sample"]["runs"]) == 10 and set(results["sample"]["covered"]) == {"va", "expr", "au", "all"}
