"""The one list of models an analysis can run (model cards, in the spirit of open_clip's and timm's
registries): the page, `python -m core.analyze` and training take their names, labels and defaults
from here.

A card says what core.models builder makes the model, what it reads (face crops, or the embeddings of
another card's model), which tasks it can give and its defaults. Temporal models (LSTMs) read an
encoder's embeddings: a trained one only makes sense on the very encoder weights it was trained on,
which core.predict checks.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.labels import TASKS

CLIP_MODEL = "ViT-B-32"          # open_clip architecture when none is named
LSTM_WINDOW, LSTM_STRIDE = 64, 32   # frames per LSTM window and between window starts (training and prediction)


@dataclass(frozen=True)
class ModelCard:
    name: str                     # in --models, AnalysisConfig.models and run metadata
    label: str                    # on the page
    builder: str                  # core.models.create_model name
    reads: str | None             # None: face crops; else the card whose embeddings it reads
    tasks: tuple[str, ...]        # outputs it can give
    description: str


CARDS: dict[str, ModelCard] = {card.name: card for card in (
    ModelCard("ddamfn", "DDAMFN", "ddamfn", None, TASKS,
              "DDAMFN per frame: valence-arousal, 8 expressions, 12 AUs from its heads"),
    ModelCard("lstm", "DDAMFN+LSTM", "lstm", "ddamfn", TASKS,
              "an LSTM over DDAMFN embeddings: the same outputs with temporal context"),
    ModelCard("clip", "CLIP", "clip", None, ("expr",),
              "CLIP expressions: zero-shot from prompt sets, or a trained adapter when its weights are given"),
    ModelCard("clip-lstm", "CLIP+LSTM", "lstm", "clip", ("expr",),
              "an LSTM over CLIP (or adapted CLIP) embeddings: expressions with temporal context"),
)}
ALIASES = {"ddamfn-lstm": "lstm"}


def card(name: str) -> ModelCard:
    """The card of a model name or alias; ValueError naming the known ones."""
    key = ALIASES.get(name, name)
    if key not in CARDS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(CARDS)}")
    return CARDS[key]


def with_encoders(names) -> tuple[str, ...]:
    """The names (aliases resolved) plus the encoders they read, in CARDS order."""
    chosen = {card(n).name for n in names}
    chosen |= {CARDS[n].reads for n in chosen if CARDS[n].reads}
    if not chosen:
        raise ValueError("no model chosen")
    return tuple(n for n in CARDS if n in chosen)


def card_for_checkpoint(architecture: str, encoder: str | None = None) -> str | None:
    """The card that runs a checkpoint of an architecture (an LSTM's by the encoder it was trained on:
    "ddamfn", or "clip" / "clip-adapter"); None for a checkpoint no analysis runs."""
    if architecture == "lstm":
        return "clip-lstm" if encoder in ("clip", "clip-adapter") else "lstm"
    return {"ddamfn": "ddamfn", "ddamfn-upstream": "ddamfn", "clip-adapter": "clip"}.get(architecture)


def by_label(label: str) -> ModelCard:
    for c in CARDS.values():
        if c.label == label:
            return c
    raise ValueError(f"unknown model {label!r}; choose from {', '.join(c.label for c in CARDS.values())}")
