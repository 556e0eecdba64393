"""The one registry of AffectLens models, in the spirit of timm's and open_clip's: each model file
registers, beside its class, the architecture core.models.create_model builds (@register_architecture)
and the model cards an analysis runs (register_card). The page's labels and choices, `--models`, the
app's weight variables, training kinds, encoder kinds and the table's output keys are read from here.

A card says what architecture runs it, what it reads (face crops, or the embeddings of another card's
model), which tasks it can give, its label on the page, the environment variable of the app's weights
for it and their default, the `python -m training train --model` kinds whose checkpoints it runs, the
embeddings it gives as an encoder, and the output keys of its own (beside va / expr / au). Temporal
models (LSTMs) read an encoder's embeddings: a trained one only makes sense on the very encoder weights
it was trained on, which core.predict checks.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    name: str                     # create_model name
    build: Callable               # (weights, **options) -> (module, source, random tasks, metadata)
    reads_embeddings: bool        # input: (N, D) embeddings rather than uint8 face crops
    aliases: tuple[str, ...] = ()


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


_ARCHITECTURES: dict[str, Architecture] = {}
_CARDS: dict[str, ModelCard] = {}


def register_architecture(name: str, reads_embeddings: bool = False, aliases: tuple[str, ...] = ()):
    """Decorator of a builder: create_model(name) calls it."""
    def register(build: Callable) -> Callable:
        _ARCHITECTURES[name] = Architecture(name, build, reads_embeddings, tuple(aliases))
        return build
    return register


def register_card(card: ModelCard) -> ModelCard:
    _CARDS[card.name] = card
    return card


def _registered() -> None:
    import core.models  # noqa: F401  (each model file registers on import)


def architecture(name: str) -> Architecture:
    """The architecture of a create_model name or alias; ValueError naming the known ones."""
    _registered()
    for arch in _ARCHITECTURES.values():
        if name == arch.name or name in arch.aliases:
            return arch
    raise ValueError(f"unknown model {name!r}; known: {', '.join(architecture_names())}")


def architecture_names() -> tuple[str, ...]:
    _registered()
    return tuple(n for a in _ARCHITECTURES.values() for n in (a.name, *a.aliases))


def cards() -> dict[str, ModelCard]:
    """Every card, in the page's order."""
    _registered()
    return dict(_CARDS)


def card(name: str) -> ModelCard:
    """The card of a model name or alias; ValueError naming the known ones."""
    for c in cards().values():
        if name == c.name or name in c.aliases:
            return c
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(cards())}")


def with_encoders(names) -> tuple[str, ...]:
    """The names (aliases resolved) plus the encoders they read, in card order."""
    chosen = {card(n).name for n in names}
    chosen |= {card(n).reads for n in chosen if card(n).reads}
    if not chosen:
        raise ValueError("no model chosen")
    return tuple(n for n in cards() if n in chosen)


def label(name: str) -> str:
    """The page's label of a card ("DDAMFN+LSTM", "CLIP", ...)."""
    return card(name).label


def labels() -> tuple[str, ...]:
    """The page's model choices, in card order."""
    return tuple(c.label for c in cards().values())


def by_label(text: str) -> ModelCard:
    for c in cards().values():
        if c.label == text:
            return c
    raise ValueError(f"unknown model {text!r}; choose from {', '.join(labels())}")


def encoder_card(kind: str) -> str:
    """The card whose model gives embeddings of an encoder kind ("ddamfn", "clip", "clip-adapter")."""
    for c in cards().values():
        if kind in c.encoder_kinds:
            return c.name
    raise ValueError(f"unknown encoder {kind!r}; known: {', '.join(encoder_kinds())}")


def encoder_kinds() -> tuple[str, ...]:
    return tuple(k for c in cards().values() for k in c.encoder_kinds)


def training_kinds() -> tuple[str, ...]:
    """`python -m training train --model` kinds, in card order."""
    return tuple(dict.fromkeys(k for c in cards().values() for k in c.training_kinds))


def card_for_training_kind(kind: str) -> str:
    """The card whose app weights a training kind replaces (the first that runs its checkpoints)."""
    for c in cards().values():
        if kind in c.training_kinds:
            return c.name
    raise ValueError(f"unknown training kind {kind!r}; known: {', '.join(training_kinds())}")


def card_for_checkpoint(architecture_name: str, encoder: str | None = None) -> str | None:
    """The card that runs a checkpoint of an architecture (a temporal one by the encoder it was trained on,
    "ddamfn" when it records none); None for a checkpoint no analysis runs."""
    for c in cards().values():
        if architecture_name in c.checkpoints and (c.reads is None or c.reads == encoder_card(encoder or "ddamfn")):
            return c.name
    return None


def configured_weights(names, env: Mapping[str, str], clip_model: str, given: Mapping[str, str] | None = None
                       ) -> tuple[dict[str, str | None], list[str]]:
    """The weights of each named card, and a line per card saying where they came from: `given` (a
    command line's --weights), else the card's environment variable, else its default (None: random). A
    card whose embeddings a card with weights reads gets no default: that card's checkpoint names the
    encoder weights it was trained on (core.predict.load_models). The page (webapp.config) and
    `python -m core.analyze` both ask here."""
    given = dict(given or {})
    explicit = {}
    for name in names:
        c = card(name)
        if name in given:
            explicit[name] = (given[name], "--weights")
        elif c.weights_env and env.get(c.weights_env):
            explicit[name] = (env[c.weights_env], c.weights_env)
    weights, notes = {}, []
    for name in names:
        c = card(name)
        readers = [card(r).label for r in explicit if card(r).reads == name]
        if name in explicit:
            spec, origin = explicit[name]
            note = f"{c.label}: weights {spec} (from {origin})"
        elif readers:
            spec, note = None, f"{c.label}: the weights {', '.join(readers)} was trained on (its checkpoint names them)"
        elif c.default_weights:
            spec, note = c.default_weights(clip_model)
        else:
            where = f" ({c.weights_env})" if c.weights_env else ""
            spec, note = None, f"{c.label}: no weights configured{where}: random, untrained"
        weights[name] = spec or None
        notes.append(note)
    return weights, notes


def output_label(output: str, card_name: str | None = None, prompt_set: str | None = None) -> str:
    """How the page names an output: a prompt set's by the card that scores prompts and the set ("CLIP
    basic"), a card's own output by its label ("CLIP+LSTM"), va / expr / au by the card that gave them."""
    if prompt_set is not None:
        return f"{next(c for c in cards().values() if c.open_clip).label} {prompt_set}"
    for c in cards().values():
        if output in (c.outputs or {}):
            return c.outputs[output]
    return card(card_name).label
