"""core.labels holds the label spaces exactly as DESIGN.md states them, and the AffectNet-8 map is right."""
import re

import pytest
import torch

from core import labels


def test_expression_and_au_orders_are_the_aff_wild2_ones():
    assert labels.EXPRESSIONS == (
        "Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other",
    )
    assert labels.AUS == ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
    assert labels.VA_NAMES == ("valence", "arousal")
    assert labels.TASKS == ("va", "expr", "au")


def test_annotation_headers_and_folders_are_exact():
    assert labels.ANNOTATION_HEADER == {
        "va": "valence,arousal",
        "expr": "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other",
        "au": "AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26",
    }
    assert labels.CHALLENGE_DIRS["va"] == ("VA_Estimation_Challenge",)
    assert set(labels.CHALLENGE_DIRS["expr"]) == {"EXPR_Recognition_Challenge", "EXPR_Classification_Challenge"}
    assert labels.CHALLENGE_DIRS["au"] == ("AU_Detection_Challenge",)
    assert labels.SPLIT_DIRS == {"train": "Train_Set", "val": "Validation_Set"}
    assert (labels.INVALID_VA, labels.INVALID_EXPR, labels.INVALID_AU) == (-5.0, -1, -1)


# The same emotion under its AffectNet and Aff-Wild2 names, written out independently of core.labels.
SAME_EMOTION = {
    "Neutral": "Neutral", "Happy": "Happiness", "Sad": "Sadness", "Surprise": "Surprise",
    "Fear": "Fear", "Disgust": "Disgust", "Angry": "Anger", "Contempt": None,
}


def test_affectnet8_order_and_map_follow_the_emotion_names():
    assert labels.AFFECTNET8 == ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Angry", "Contempt")
    for an_index, an_name in enumerate(labels.AFFECTNET8):
        aw_index = labels.AFFECTNET8_TO_AFFWILD2[an_index]
        expected = SAME_EMOTION[an_name]
        assert (None if aw_index is None else labels.EXPRESSIONS[aw_index]) == expected
    for aw_index, an_index in labels.AFFWILD2_TO_AFFECTNET8.items():
        if an_index is None:
            assert labels.EXPRESSIONS[aw_index] == "Other"
        else:
            assert labels.AFFECTNET8_TO_AFFWILD2[an_index] == aw_index
    assert len(labels.AFFWILD2_TO_AFFECTNET8) == 8


def test_affectnet8_logits_are_reordered_and_other_never_wins():
    logits = torch.randn(4, 3, 8)
    out = labels.affectnet8_to_affwild2_logits(logits)
    assert out.shape == logits.shape
    for an_index, an_name in enumerate(labels.AFFECTNET8):
        if SAME_EMOTION[an_name] is not None:
            aw_index = labels.EXPRESSIONS.index(SAME_EMOTION[an_name])
            assert torch.equal(out[..., aw_index], logits[..., an_index])
    other = labels.EXPRESSIONS.index("Other")
    assert torch.equal(out[..., other], logits.min(dim=-1).values)
    # The winning AffectNet class keeps winning under its Aff-Wild2 name (unless it was Contempt).
    winner = logits.argmax(-1)
    keep = winner != labels.AFFECTNET8.index("Contempt")
    mapped = torch.tensor([labels.AFFECTNET8_TO_AFFWILD2[int(i)] for i in winner[keep]])
    assert torch.equal(out.argmax(-1)[keep], mapped)


@pytest.mark.parametrize("color", labels.EXPRESSION_COLORS)
def test_expression_colours_are_hex(color):
    assert re.fullmatch(r"#[0-9a-f]{6}", color)


def test_one_distinct_colour_per_expression():
    assert len(set(labels.EXPRESSION_COLORS)) == len(labels.EXPRESSIONS)
