"""The per-video review queue says when its model was trained on the video's annotations: webapp.reviews.
in_sample reads each model's checkpoint training record (core.review.trained_on) against the Aff-Wild2
split it names."""
import dataclasses

from core.affwild2_index import AffWild2Index
from tests.runs import run_info
from webapp.reviews import in_sample


def with_training(run, root, tasks=("expr",)):
    record = {"training": {"config": {"root": str(root), "tasks": list(tasks)}}}
    return dataclasses.replace(run, models={card: dataclasses.replace(m, metadata=record)
                                            for card, m in run.models.items()})


def test_in_sample_from_the_checkpoints_training_record(affwild2_root):
    index = AffWild2Index(affwild2_root)
    trained_on, held_out = index.videos("expr", "train")[0], index.videos("expr", "val")[0]
    run = run_info({"expr": "lstm"}, {"lstm": False})
    trained = with_training(run, affwild2_root)
    assert in_sample(trained, trained_on) is True
    assert in_sample(trained, held_out) is False
    assert in_sample(run, trained_on) is None                  # no training record: it cannot say
    assert in_sample(trained, None) is None                    # an analysis that was not stored
    assert in_sample(with_training(run, affwild2_root / "gone"), trained_on) is None   # its dataset is not here
