"""benchmarks/audit.py runs end to end on a tiny set (the Pexels clips, single_face.mp4 and the face part of
face_noface.mov; no photo pans): planted errors within the budget, every ranking scored. The figures
themselves are in benchmarks/RESULTS.md, not asserted here."""
import pandas as pd
import pytest

from benchmarks.audit import run, score_ranking

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
    results = run(tmp_path, media_dir, clip=96, pan=0, folds=3, epochs=3, seed=0)
    assert (results["videos"], results["frames"]) == (6, 504) and results["planted"] > 0
    assert all(0 < share <= 0.15 for share in results["planted_share"].values())
    for name in ("a", "b", "c"):
        assert results[name]["clean_control"]["clean_minutes"] == 0.34
        for task in ("va", "expr", "au"):
            ap = results[name][task]["average_precision"]
            assert 0 <= ap <= 1 and results[name][task]["planted"] == sum(
                results[name][f"{task}/{k}"]["planted"] for k in {"va": ("offset", "sign", "lag"),
                                                                    "expr": ("swap",), "au": ("stuck",)}[task])
