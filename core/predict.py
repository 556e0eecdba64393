"""The one prediction path, shared by the pipeline (videos and Aff-Wild2 images), the page and training:

    uint8 face crops --encode()--> embeddings per encoder ("ddamfn" 512-d, "clip" D)
    embeddings of the face frames --predict()--> per-frame outputs after their activation:
        va (n, 2) in [-1, 1], expr (n, 8) and au (n, 12) probabilities, and (n, 8) expression
        probabilities per prompt set (core.table.prompt_output), of a trained adapter and of CLIP+LSTM
        (their cards' output keys)
    probabilities --decisions in core.table--> classes and AU on/off

Frame models run on the face frames and the other frames are filled by core.fill ("interpolate");
temporal models (LSTMs) run over the whole sequence with the face mask and give every frame its own
output. Each task comes from the most specific model that has it: the LSTM where it predicts the task,
else DDAMFN's heads; the AU thresholds are those of the checkpoint that produced the AU outputs.

A trained LSTM only means something on the encoder weights it was trained on: its checkpoint records
their content key (metadata["embedding"]), and load_models refuses a different or random encoder. When
no encoder weights are given, the ones the LSTM recorded are loaded.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from core import runtime
from core.analysis import ModelRun
from core.cards import ADAPTER_OUTPUT, CLIP_LSTM_OUTPUT, CLIP_MODEL
from core.device import pick_device, run_batched, use_all_cores
from core.fill import fill_gaps
from core.jsonsafe import jsonable
from core.labels import AUS, EXPRESSIONS
from core.models import LoadedModel, create_model
from core.models.clip import prompt_set
from core.models.temporal import LSTM_STRIDE, LSTM_WINDOW
from core.registry import card, with_encoders
from core.table import prompt_output
from core.weights import WeightsError, state_key

CPU_BATCH = 16               # faces per forward on a CPU: DDAMFN is fastest at 8-16 (benchmarks/RESULTS.md)
ACTIVATIONS = {"va": lambda v: v, "expr": lambda v: v.softmax(-1), "au": torch.sigmoid}


# Encoders (DDAMFN, CLIP, a CLIP adapter) answer one protocol, their own methods: encoder_kind(adapted),
# embedding_dim(kind), embedding_key(kind) (the content key a trained LSTM records and is checked
# against) and embeddings(x, kind, batch_size, amp); CLIP models also zero_shot_clip and adapt(raw).


@torch.no_grad()
def encode(loaded: LoadedModel, crops, kind: str | None = None, ran: dict[str, int] | None = None) -> np.ndarray:
    """Embeddings (B, D) float32 of uint8 RGB face crops (B, H, W, 3), numpy or torch: DDAMFN's 512-d
    embedding, CLIP's raw image embedding (also under an adapter; kind "clip-adapter" gives the
    adapter's own), on the model's device, fp16 autocast on a GPU. The raw embeddings come from the
    encoder's OpenVINO model once core.runtime has it ready (load_models starts it), else from eager
    torch; ran (runtime -> faces) counts which ran them."""
    model, gpu = loaded.model, loaded.device.type == "cuda"
    raw_kind = model.encoder_kind(adapted=False)
    kind = kind or raw_kind
    x = loaded.preprocess(crops)
    fast = runtime.accelerated(model)
    if fast is None:
        emb = model.embeddings(x, kind, 256 if gpu else CPU_BATCH, gpu)
    else:
        emb = run_batched(fast, x, batch_size=CPU_BATCH, amp=False)
        if kind != raw_kind:
            emb = model.adapt(emb.to(loaded.device))["embedding"].float().cpu()
    if ran is not None:
        name = fast.name if fast is not None else runtime.TORCH
        ran[name] = ran.get(name, 0) + len(x)
    return emb.numpy()


@dataclass
class LoadedModels:
    """The models of an analysis, loaded once and reused (the app keeps a few)."""

    device: torch.device
    models: dict[str, LoadedModel]        # card name -> model
    au_thresholds: np.ndarray             # of the checkpoint whose heads give the AU outputs
    windows: dict[str, dict] = field(default_factory=dict)   # temporal card -> {window, stride}

    @property
    def clip(self) -> LoadedModel | None:
        return self.models.get("clip")

    @property
    def clip_size(self) -> int:
        return self.clip.model.preprocessing["size"] if self.clip else 0

    @property
    def encoders(self) -> dict[str, int]:
        """The encoders this analysis runs on face crops, with their embedding widths."""
        return {n: m.model.embedding_dim(m.model.encoder_kind(adapted=False)) for n, m in self.models.items()
                if card(n).reads is None}

    def task_sources(self) -> dict[str, str]:
        """task -> the card whose outputs fill the va / expr / au columns: the LSTM over DDAMFN's heads,
        except that a random head never stands in front of a trained one (a retrained DDAMFN beside an LSTM
        with random weights answers with its own heads; source_notes says so)."""
        out = {}
        for name in ("ddamfn", "lstm"):
            if name not in self.models:
                continue
            info = self.models[name].info
            for task in (t for t in info.tasks if t in ACTIVATIONS):
                before = out.get(task)
                if before is None or not self._trained(before, task) or self._trained(name, task):
                    out[task] = name
        return out

    def _trained(self, name: str, task: str) -> bool:
        return task not in self.models[name].info.untrained_tasks

    def source_notes(self) -> tuple[str, ...]:
        """Why a task's outputs come from DDAMFN's heads although the LSTM was loaded (said in the run)."""
        skipped = [t for t, name in self.task_sources().items() if name == "ddamfn" and "lstm" in self.models
                   and t in self.models["lstm"].info.tasks]
        if not skipped:
            return ()
        return (f"{', '.join(t.upper() for t in skipped)} come from DDAMFN's trained heads: the LSTM's are random "
                "weights (train an LSTM on this DDAMFN's embeddings to use it)",)

    def describe(self, ran: dict[str, dict[str, int]] | None = None) -> dict[str, ModelRun]:
        """Card name -> where its weights came from, which of its outputs are random and what runs it: for
        an encoder, what ran its faces in an analysis (ran: card -> runtime -> faces, as encode counts),
        else what runs it now (core.runtime)."""
        ran = ran or {}
        return {name: ModelRun(m.info.source, m.info.untrained, tuple(m.info.tasks), tuple(m.info.untrained_tasks),
                               jsonable(m.info.metadata), runtime.used(ran.get(name, {})) or runtime.current(m.model))
                for name, m in self.models.items()}

    @property
    def untrained(self) -> bool:
        return any(m.info.untrained for m in self.models.values())

    def weight_keys(self) -> dict[str, str]:
        """Content key of each model's weights (computed once): what makes two analyses of one video the
        same, random weights included (they differ from one load to the next)."""
        if not hasattr(self, "_weight_keys"):
            self._weight_keys = {n: state_key([m.model], {"source": m.info.source}) for n, m in self.models.items()}
        return self._weight_keys


def load_models(models: Iterable[str], weights: dict[str, str] | None = None, device="auto",
                clip_model: str = CLIP_MODEL, prompt_sets: Iterable = (), create=create_model) -> LoadedModels:
    """Build the chosen models (and the encoders they read) on one device. weights: card name -> spec
    (absent: random, reported as untrained). create: how one model is built (create_model's signature); a
    caller that keeps models between analyses (the web app) passes a caching one, so that another
    configuration reuses the DDAMFN it already loaded. Raises WeightsError (one line) for weights that cannot
    be had or do not fit, including a trained LSTM on other encoder weights than its own."""
    weights = {k: v for k, v in (weights or {}).items() if v}
    names = with_encoders([*models, *weights])
    dev = pick_device(device)
    temporal = {}
    for name in names:        # trained temporal models first: they name the encoder weights they need
        c = card(name)
        if c.reads and name in weights:
            temporal[name] = create(c.architecture, weights[name], device=dev)
            recorded = temporal[name].info.metadata.get("embedding") or {}
            if c.reads not in weights and recorded.get("weights"):
                weights[c.reads] = recorded["weights"]
    loaded: dict[str, LoadedModel] = {}
    for name in names:
        c = card(name)
        if c.reads is None:
            options = {"model_name": clip_model} if c.open_clip else {}
            loaded[name] = create(c.architecture, weights.get(name), device=dev, **options)
    windows = {}
    for name in names:
        c = card(name)
        if c.reads is None:
            continue
        encoder = loaded[c.reads].model
        if name in temporal:
            check_encoder(temporal[name], loaded[c.reads])
            loaded[name] = temporal[name]
        else:
            loaded[name] = create(c.architecture, None, device=dev, tasks=c.tasks,
                                  input_dim=encoder.embedding_dim(encoder.encoder_kind()))
        windows[name] = loaded[name].info.metadata.get("windows") or {"window": LSTM_WINDOW, "stride": LSTM_STRIDE}
    if "ddamfn" in loaded:                                 # encode() feeds it channels_last batches
        loaded["ddamfn"].model.to(memory_format=torch.channels_last)
    if dev.type == "cpu":
        use_all_cores()
    setting = runtime.runtime_setting()
    for name, m in loaded.items():                         # encoders' OpenVINO models, in the background
        if card(name).reads is None:
            runtime.start(m.model, dev, m.model.preprocessing["size"], setting)
    if "clip" in loaded:                                   # text embeddings of the prompt sets, once
        for spec in prompt_sets:
            loaded["clip"].model.zero_shot_clip.text_embeddings(prompt_set(spec))
    result = LoadedModels(dev, loaded, np.full(len(AUS), 0.5), windows)
    au_source = result.task_sources().get("au")
    thresholds = loaded[au_source].info.metadata.get("au_thresholds") if au_source else None
    result.au_thresholds = np.broadcast_to(np.asarray(thresholds or 0.5, np.float64), (len(AUS),)).copy()
    return result


def check_encoder(temporal: LoadedModel, loaded_encoder: LoadedModel) -> None:
    """Refuse a trained temporal model on an encoder other than the one its checkpoint records."""
    source, encoder = temporal.info.source, loaded_encoder.model
    recorded = temporal.info.metadata.get("embedding") or {}
    if not recorded.get("key"):
        raise WeightsError(f"{source} does not record the encoder weights it was trained on; retrain it with "
                           "`python -m training train` so that it can be checked")
    kind = recorded.get("encoder", "ddamfn")
    if loaded_encoder.info.source == "random":
        raise WeightsError(f"{source} was trained on embeddings of {recorded.get('weights')}; the {kind} "
                           "loaded here is random: give its weights")
    if encoder.encoder_kind() == "clip" and kind == "clip-adapter":
        raise WeightsError(f"{source} was trained on adapted CLIP embeddings ({recorded.get('weights')}); "
                           "the CLIP loaded here is not that adapter")
    key = encoder.embedding_key(kind)
    if key != recorded["key"]:
        raise WeightsError(f"{source} was trained on embeddings {recorded['key']} of {recorded.get('weights')}; "
                           f"the {kind} loaded here gives {key}: use the encoder weights it was trained on")


@dataclass
class Predictions:
    """Per-frame outputs of one sequence of frames (n rows), activated; NaN where none."""

    outputs: dict[str, np.ndarray]        # va, expr, au, prompt sets' and the CLIP models' own outputs
    face: np.ndarray                      # (n,) bool
    filled: np.ndarray                    # (n,) bool: a faceless row that got values from the rule above
    sources: dict[str, str]               # output -> card name


@torch.no_grad()
def predict(loaded: LoadedModels, emb: dict[str, np.ndarray], face: np.ndarray, prompt_sets: Iterable = (),
            fill: bool = True) -> Predictions:
    """Outputs for n frames from the embeddings of their face frames. emb: encoder -> (face.sum(), D) in
    frame order; face: (n,) bool. fill=False leaves faceless rows empty (NaN)."""
    face = np.asarray(face, dtype=bool)
    n, any_face = len(face), bool(face.any())
    outputs, sources = {}, {}

    def frames(values: np.ndarray) -> np.ndarray:          # face-row values -> (n, k), faceless filled
        full = np.full((n, values.shape[1]), np.nan)
        full[face] = values
        return fill_gaps(full, face) if fill else full

    def sequence(values: np.ndarray) -> np.ndarray:        # a temporal model's (n, k) -> as fill says
        out = values.astype(np.float64)
        if not any_face:
            out[:] = np.nan
        elif not fill:
            out[~face] = np.nan
        return out

    task_sources = loaded.task_sources()
    if "ddamfn" in loaded.models and any_face:
        heads = activate(_run_heads(loaded.models["ddamfn"], emb["ddamfn"]))
        for task, values in heads.items():
            if task_sources.get(task) == "ddamfn":
                outputs[task], sources[task] = frames(values), "ddamfn"
    if "lstm" in loaded.models and any_face:
        out = _temporal(loaded, "lstm", emb["ddamfn"], face)
        for task, values in out.items():
            if task_sources.get(task) == "lstm":
                outputs[task], sources[task] = sequence(values), "lstm"
    if loaded.clip is not None:
        outputs.update(_clip_outputs(loaded, emb.get("clip"), face, prompt_sets, frames, sequence, sources))
    for task, dim in (("va", 2), ("expr", len(EXPRESSIONS)), ("au", len(AUS))):
        outputs.setdefault(task, np.full((n, dim), np.nan))
    filled = ~face & any_face & fill
    return Predictions(outputs, face, filled, sources)


def _clip_outputs(loaded, raw, face, prompt_sets, frames, sequence, sources) -> dict[str, np.ndarray]:
    model = loaded.clip.model
    out = {}
    raw_t = torch.as_tensor(raw if raw is not None else np.zeros((0, 1)), dtype=torch.float32).to(loaded.device)
    for spec in prompt_sets:
        ps = prompt_set(spec)
        out[prompt_output(ps.name)] = frames(zero_shot(model, raw_t, ps))
        sources[prompt_output(ps.name)] = "clip"
    adapted = model.adapt(raw_t) if len(raw_t) else None
    if adapted is not None:
        out[ADAPTER_OUTPUT] = frames(adapted["expr"].float().softmax(-1).cpu().numpy())
        sources[ADAPTER_OUTPUT] = "clip"
    features = adapted["embedding"] if adapted is not None else raw_t
    if "clip-lstm" in loaded.models:
        n = len(face)
        probs = np.full((n, len(EXPRESSIONS)), np.nan)
        if face.any():
            probs = sequence(_temporal(loaded, "clip-lstm", features.float().cpu().numpy(), face)["expr"])
        out[CLIP_LSTM_OUTPUT], sources[CLIP_LSTM_OUTPUT] = probs, "clip-lstm"
    return out


@torch.no_grad()
def zero_shot(model: torch.nn.Module, raw: torch.Tensor | np.ndarray, prompts) -> np.ndarray:
    """Zero-shot expression probabilities (B, 8) of raw CLIP image embeddings for a prompt set (also
    under an adapter: its frozen CLIP)."""
    clip = model.zero_shot_clip
    raw = torch.as_tensor(raw, dtype=torch.float32).to(clip.logit_scale().device)
    if not len(raw):
        return np.zeros((0, len(EXPRESSIONS)))
    return clip.zero_shot(raw, prompt_set(prompts)).cpu().numpy()


def activate(out: dict) -> dict[str, np.ndarray]:
    """Model outputs (va already in [-1, 1], expr / au logits) -> float64 va and probabilities."""
    return {t: ACTIVATIONS[t](torch.as_tensor(v).float()).numpy().astype(np.float64)
            for t, v in out.items() if t in ACTIVATIONS}


def _run_heads(model: LoadedModel, emb: np.ndarray) -> dict[str, torch.Tensor]:
    x = torch.as_tensor(np.asarray(emb, np.float32)).to(model.device)
    return run_batched(model.model.heads, x, batch_size=4096, amp=False)


def _temporal(loaded: LoadedModels, name: str, emb: np.ndarray, face: np.ndarray) -> dict[str, np.ndarray]:
    """A temporal model over the sequence (faceless rows zero, masked), activated, every row."""
    seq = np.zeros((len(face), emb.shape[1]), np.float32)
    seq[face] = emb
    w = loaded.windows[name]
    out = loaded.models[name].model.predict_video(seq, face, window=w["window"], stride=w["stride"])
    return activate(out)
