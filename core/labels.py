"""The label spaces of Aff-Wild2 / ABAW, defined once for the whole project.

Every other module takes its class orders from here, so that an index means the same thing in a model
head, an annotation file, a database row and a plot.
"""
from __future__ import annotations

TASKS = ("va", "expr", "au")

VA_NAMES = ("valence", "arousal")

# Aff-Wild2 expression order (EXPR annotation files, ABAW submissions).
EXPRESSIONS = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")

# AffectNet-8 order, used by the upstream DDAMFN AffectNet checkpoints.
AFFECTNET8 = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Angry", "Contempt")

# AffectNet-8 index -> Aff-Wild2 index. Contempt has no Aff-Wild2 twin (None); Aff-Wild2's Other has no
# AffectNet source.
AFFECTNET8_TO_AFFWILD2: dict[int, int | None] = {
    0: EXPRESSIONS.index("Neutral"),
    1: EXPRESSIONS.index("Happiness"),
    2: EXPRESSIONS.index("Sadness"),
    3: EXPRESSIONS.index("Surprise"),
    4: EXPRESSIONS.index("Fear"),
    5: EXPRESSIONS.index("Disgust"),
    6: EXPRESSIONS.index("Anger"),
    7: None,
}
AFFWILD2_TO_AFFECTNET8: dict[int, int | None] = {
    aw: an for an, aw in AFFECTNET8_TO_AFFWILD2.items() if aw is not None
}
AFFWILD2_TO_AFFECTNET8[EXPRESSIONS.index("Other")] = None

# The 7-class order (AffectNet-8 without Contempt) in which the upstream DDAMFN 7-class checkpoints score:
# AffectNet-7 and RAF-DB alike (the authors' RAF-DB scripts name their classes in this order, and the
# per-class counts of their published RAF-DB confusion matrix fit it, not RAF-DB's own label order).
AFFECTNET7 = AFFECTNET8[:7]

# The 12 action units of the ABAW AU track, in annotation-file order.
AUS = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")

# Markers of an invalid (unannotated) frame in the annotation files.
INVALID_VA = -5.0
INVALID_EXPR = -1
INVALID_AU = -1

# Header line of each annotation file, and the challenge folder names (EXPR has an older spelling).
ANNOTATION_HEADER = {
    "va": ",".join(VA_NAMES),
    "expr": ",".join(EXPRESSIONS),
    "au": ",".join(AUS),
}
CHALLENGE_DIRS = {
    "va": ("VA_Estimation_Challenge",),
    "expr": ("EXPR_Recognition_Challenge", "EXPR_Classification_Challenge"),
    "au": ("AU_Detection_Challenge",),
}
SPLIT_DIRS = {"train": "Train_Set", "val": "Validation_Set"}

# Colours for expression strips, one per Aff-Wild2 class (plots and the review page share them).
EXPRESSION_COLORS = (
    "#9e9e9e", "#d32f2f", "#689f38", "#7b1fa2", "#fbc02d", "#1976d2", "#f57c00", "#5d4037",
)


def affectnet8_to_affwild2_logits(logits, classes=AFFECTNET8):
    """Reorder class scores (..., len(classes)) named as in AFFECTNET8 (AFFECTNET8, AFFECTNET7)
    into Aff-Wild2 order (..., 8).

    Contempt is dropped; Other has no source, so its column is filled with the minimum score of the row
    (it never wins unless every class ties) -- the caller learns this from the model's metadata.
    """
    shape = (*logits.shape[:-1], len(EXPRESSIONS))
    out = logits.min(dim=-1, keepdim=True).values.expand(shape).clone()
    for i, name in enumerate(classes):
        aw = AFFECTNET8_TO_AFFWILD2[AFFECTNET8.index(name)]
        if aw is not None:
            out[..., aw] = logits[..., i]
    return out
