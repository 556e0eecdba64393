"""The model cards: what each model an analysis runs is called, what it reads and gives, where its weights
come from. Plain data apart from the model classes, so that a card lookup (the command line's --help, the
page's choices, training's kinds) imports neither torch nor open_clip; core.registry serves them.

A card says what architecture runs it, what it reads (face crops, or the embeddings of another card's
model), which tasks it can give, its label on the page, the environment variable of the app's weights
for it and their default, the `python -m training train --model` kinds whose checkpoints it runs, the
embeddings it gives as an encoder, and the output keys of its own (beside va / expr / au).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.labels import TASKS

CLIP_MODEL = "ViT-B-32"                  # open_clip architecture when none is named
UPSTREAM_DDAMFN = "ddamfn-upstream"      # the architecture of a published DDAMNet checkpoint
UPSTREAM_BACKBONE = "ddamfn-backbone"    # upstream's MixedFeatureNet (MFN_msceleb.pth): DDAMNet's `features`
CLIP_ADAPTER = "clip-adapter"            # the architecture of our trained CLIP adapters
# The CLIP models' own output keys in the table; a prompt set's is core.table.prompt_output(name), which
# a "-" keeps apart from these (prompt set names are letters, digits and _).
ADAPTER_OUTPUT, CLIP_LSTM_OUTPUT = "clip-adapter", "clip-lstm"


@dataclass(frozen=True)
class ModelCard:
    name: str                     # in --models, AnalysisConfig.models and run metadata
    label: str                    # on the page
    architecture: str             # the create_model name that builds it
    reads: str | None             # None: face crops; else the card whose embeddings it reads
    tasks: tuple[str, ...]        # outputs it can give
    description: str
    weights_env: str | None = None                 # the environment variable of its weights (page and CLI)
    default_weights: Callable[[str], tuple[str | None, str]] | None = None   # (CLIP architecture) -> (spec, note)
    checkpoints: tuple[str, ...] = ()              # architectures of the checkpoints it runs
    training_kinds: tuple[str, ...] = ()           # `training train --model` kinds it runs the checkpoints of
    encoder_kinds: tuple[str, ...] = ()            # embeddings it gives (training --encoder, an LSTM's record)
    outputs: Mapping[str, str] | None = None       # its own output keys in the table -> page label
    open_clip: bool = False                        # its builder and default weights take AnalysisConfig.clip_model
    aliases: tuple[str, ...] = ()


def _default_ddamfn_weights(model_name: str) -> tuple[str | None, str]:
    from core.weights import default_ddamfn_weights     # looks in the Hub cache: only when asked

    return default_ddamfn_weights(model_name)


def _default_clip_weights(model_name: str) -> tuple[str | None, str]:
    from core.weights import default_clip_weights      # looks in the Hub cache: only when asked

    return default_clip_weights(model_name)


CARDS = (                                # in the page's order
    ModelCard("ddamfn", "DDAMFN", "ddamfn", None, TASKS,
              "DDAMFN per frame: valence-arousal, 8 expressions, 12 AUs from its heads",
              weights_env="AFFECTLENS_WEIGHTS_DDAMFN", default_weights=_default_ddamfn_weights,
              checkpoints=("ddamfn", UPSTREAM_DDAMFN, UPSTREAM_BACKBONE),
              training_kinds=("ddamfn", "ddamfn-heads"), encoder_kinds=("ddamfn",)),
    ModelCard("lstm", "DDAMFN+LSTM", "lstm", "ddamfn", TASKS,
              "an LSTM over DDAMFN embeddings: the same outputs with temporal context",
              weights_env="AFFECTLENS_WEIGHTS_LSTM", checkpoints=("lstm",), training_kinds=("lstm",),
              aliases=("ddamfn-lstm",)),
    ModelCard("clip", "CLIP", "clip", None, ("expr",),
              "CLIP expressions: zero-shot from prompt sets, or a trained adapter when its weights are given",
              weights_env="AFFECTLENS_WEIGHTS_CLIP", default_weights=_default_clip_weights,
              checkpoints=(CLIP_ADAPTER,), training_kinds=("clip-adapter",), encoder_kinds=("clip", "clip-adapter"),
              outputs={ADAPTER_OUTPUT: "CLIP adapter"}, open_clip=True),
    ModelCard("clip-lstm", "CLIP+LSTM", "lstm", "clip", ("expr",),
              "an LSTM over CLIP (or adapted CLIP) embeddings: expressions with temporal context",
              checkpoints=("lstm",), training_kinds=("lstm",), outputs={CLIP_LSTM_OUTPUT: "CLIP+LSTM"}),
)
