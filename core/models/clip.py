"""CLIP expression classification (open_clip): zero-shot from prompt sets, and a small trained adapter.

A PromptSet is a list of templates ("a photo of a {} face.") and, per Aff-Wild2 expression, a list of
phrasings; a class's text embedding is the normalised mean of all template x phrasing embeddings. Text
embeddings are cached per (model name, pretrained weights, prompt set content).

ClipAdapter (8th ABAW, "prompted" CLIP): both encoders frozen; a residual bottleneck adapter on image
embeddings and a residual linear adapter plus a learnable per-class context vector on the class text
embeddings, trained with a CLIP-style contrastive loss against the expression prompts. Its adapted image
embeddings feed TemporalLSTM (CLIP+LSTM). Every adapter layer starts at zero, so an untrained adapter
reproduces zero-shot CLIP exactly.
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core.cards import CLIP_ADAPTER, CLIP_MODEL as DEFAULT_MODEL
from core.device import run_batched
from core.labels import EXPRESSIONS
from core.models.preprocess import normalize_images
from core.registry import register_architecture
from core.weights import (WeightsError, load_checkpoint, parse_spec, read_checkpoint, resolve,
                          state_key)


@dataclass(frozen=True, eq=False)
class PromptSet:
    """Prompts for the 8 Aff-Wild2 expressions: every template (with one `{}`) x every phrasing."""

    name: str                                  # identifier used in column names: clip_<name>_expr
    templates: tuple[str, ...]
    classes: dict[str, tuple[str, ...]] = field(repr=False)   # expression name -> phrasings

    def __post_init__(self):
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.name):
            raise ValueError(f"prompt set name {self.name!r} must be letters, digits or _")
        templates = tuple(self.templates)
        if not templates or any(t.count("{}") != 1 for t in templates):
            raise ValueError(f"prompt set {self.name}: every template needs exactly one {{}}")
        if set(self.classes) != set(EXPRESSIONS) or not all(self.classes[c] for c in EXPRESSIONS):
            raise ValueError(f"prompt set {self.name}: needs phrasings for exactly {EXPRESSIONS}")
        object.__setattr__(self, "templates", templates)
        object.__setattr__(self, "classes", {c: tuple(self.classes[c]) for c in EXPRESSIONS})

    def prompts(self) -> list[list[str]]:
        """All prompt strings per expression, in EXPRESSIONS order."""
        return [[t.format(p) for t in self.templates for p in self.classes[c]] for c in EXPRESSIONS]

    def to_dict(self) -> dict:
        return {"name": self.name, "templates": list(self.templates),
                "classes": {c: list(v) for c, v in self.classes.items()}}

    @property
    def key(self) -> str:
        """Content hash: two sets with the same prompts share cached embeddings, whatever their names."""
        content = json.dumps([self.templates, [self.classes[c] for c in EXPRESSIONS]])
        return hashlib.sha1(content.encode()).hexdigest()[:16]


DEFAULT_PROMPT_SETS: dict[str, PromptSet] = {ps.name: ps for ps in (
    PromptSet("basic", ("a photo of a {} face.", "a close-up photo of a {} person.", "a {} facial expression."), {
        "Neutral": ("neutral", "calm", "expressionless"),
        "Anger": ("angry", "furious"),
        "Disgust": ("disgusted",),
        "Fear": ("fearful", "scared"),
        "Happiness": ("happy", "smiling"),
        "Sadness": ("sad", "unhappy"),
        "Surprise": ("surprised", "astonished"),
        "Other": ("confused", "contemptuous", "bored"),
    }),
    PromptSet("emotion", ("a face showing {}.", "a photo of a person feeling {}.",
                          "a video frame of a person expressing {}."), {
        "Neutral": ("no emotion", "a neutral mood"),
        "Anger": ("anger", "rage"),
        "Disgust": ("disgust", "revulsion"),
        "Fear": ("fear", "terror"),
        "Happiness": ("happiness", "joy"),
        "Sadness": ("sadness", "grief"),
        "Surprise": ("surprise", "amazement"),
        "Other": ("an emotion that is hard to name", "a mixed emotion"),
    }),
    PromptSet("facs", ("a photo of a face with {}.", "a close-up of a face: {}."), {
        "Neutral": ("relaxed facial muscles and a closed mouth",),
        "Anger": ("lowered brows, glaring eyes and pressed lips",),
        "Disgust": ("a wrinkled nose and a raised upper lip",),
        "Fear": ("raised brows, wide open eyes and stretched lips",),
        "Happiness": ("raised cheeks and pulled-up lip corners",),
        "Sadness": ("raised inner brows and lowered lip corners",),
        "Surprise": ("raised brows, wide eyes and a dropped jaw",),
        "Other": ("an ambiguous expression", "a one-sided smirk"),
    }),
)}


def prompt_set(spec) -> PromptSet:
    """A PromptSet from itself, a DEFAULT_PROMPT_SETS name, or its to_dict() form."""
    if isinstance(spec, PromptSet):
        return spec
    if isinstance(spec, str):
        if spec not in DEFAULT_PROMPT_SETS:
            raise ValueError(f"unknown prompt set {spec!r}; defaults: {', '.join(DEFAULT_PROMPT_SETS)}")
        return DEFAULT_PROMPT_SETS[spec]
    return PromptSet(spec["name"], tuple(spec["templates"]), spec["classes"])


class ClipExpression(nn.Module):
    """A frozen open_clip model for expressions. `pretrained`: None (random weights: untrained), an
    open_clip tag ("openai", "laion2b_s34b_b79k", ...) or a local open_clip weight file.

    forward(x (B,3,S,S)) -> {"embedding": (B,D) normalised, "expr": (B,8) zero-shot logits for
    `self.prompts`}; zero_shot(emb, prompt_set) -> probabilities (B,8) for any prompt set.
    """

    ARCH = "clip"
    tasks = ("expr",)
    _text_cache: dict[tuple, torch.Tensor] = {}    # (model, weights identity, prompt key) -> (8, D) on CPU

    def __init__(self, model_name: str = DEFAULT_MODEL, pretrained: str | None = None, prompts="basic"):
        super().__init__()
        import open_clip

        self.model_name, self.pretrained = model_name, pretrained
        self.prompts = prompt_set(prompts)
        self.model = _create_open_clip(model_name, pretrained).eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(model_name)
        cfg = self.model.visual.preprocess_cfg
        size = cfg["size"]
        self.preprocessing = {"size": size if isinstance(size, int) else size[0], "mean": tuple(cfg["mean"]),
                              "std": tuple(cfg["std"]), "interpolation": cfg.get("interpolation", "bicubic"),
                              "resize": "shortest side, centre crop", "color": "RGB"}
        with torch.no_grad():
            self.embed_dim = self.model.encode_text(self.tokenizer(["a face"])).shape[-1]
        self._weights_id = pretrained or f"random-{uuid.uuid4().hex}"

    @property
    def untrained(self) -> bool:
        return self.pretrained is None

    def train(self, mode: bool = True):
        """The open_clip model stays in eval mode: it is frozen, whatever its parent does."""
        super().train(mode)
        self.model.eval()
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if any(k.startswith(prefix) for k in state_dict):    # new weights: cached text embeddings do not apply
            self._weights_id = f"loaded-{uuid.uuid4().hex}"
        return super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def preprocess(self, frames, device=None) -> torch.Tensor:
        """uint8 RGB crops (B, H, W, 3) -> (B, 3, S, S): shortest side to S, centre crop, CLIP mean/std."""
        p = self.preprocessing
        interpolation = "bicubic" if p["interpolation"] == "bicubic" else "bilinear"
        return normalize_images(frames, p["size"], p["mean"], p["std"], device=device, center_crop=True,
                                interpolation=interpolation)

    @torch.no_grad()
    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(x).float(), dim=-1)

    @torch.no_grad()
    def text_embeddings(self, prompts=None) -> torch.Tensor:
        """(8, D) normalised class embeddings for a prompt set (default: self.prompts), cached."""
        ps = prompt_set(prompts if prompts is not None else self.prompts)
        key = (self.model_name, self._weights_id, ps.key)
        if key not in self._text_cache:
            device = self.model.logit_scale.device
            rows = []
            with torch.autocast(device.type, enabled=False):        # cached once: computed in fp32
                for texts in ps.prompts():
                    emb = F.normalize(self.model.encode_text(self.tokenizer(texts).to(device)).float(), dim=-1)
                    rows.append(F.normalize(emb.mean(dim=0), dim=-1))
            self._text_cache[key] = torch.stack(rows).cpu()
        return self._text_cache[key].to(self.model.logit_scale.device)

    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.detach().float().exp().clamp(max=100)

    def zero_shot(self, img_emb: torch.Tensor, prompts=None) -> torch.Tensor:
        """Expression probabilities (B, 8), Aff-Wild2 order, from normalised image embeddings."""
        text = self.text_embeddings(prompts).to(img_emb.device)
        return (self.logit_scale().to(img_emb.device) * img_emb.float() @ text.T).softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        emb = self.encode_images(x)
        return {"embedding": emb, "expr": self.logit_scale().to(emb.device) * emb @ self.text_embeddings().T}

    # -- as an encoder (core.predict) --------------------------------------------------------------------
    @property
    def zero_shot_clip(self) -> "ClipExpression":
        """The CLIP that scores prompt sets."""
        return self

    def encoder_kind(self, adapted: bool = True) -> str:
        return "clip"

    def embedding_dim(self, kind: str) -> int:
        return self.embed_dim

    def embedding_key(self, kind: str) -> str:
        return state_key([self.model], {**self.preprocessing, "model": self.model_name})

    def embeddings(self, x: torch.Tensor, kind: str, batch_size: int, amp: bool) -> torch.Tensor:
        """Raw CLIP image embeddings (B, D) float32 on the CPU."""
        return run_batched(self.encode_images, x, batch_size=batch_size, amp=amp)

    def adapt(self, raw: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """A trained adapter's embedding and logits from raw CLIP embeddings; None: zero-shot CLIP has none."""
        return None


def contrastive_loss(img_emb: torch.Tensor, class_emb: torch.Tensor, labels: torch.Tensor,
                     logit_scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP-style symmetric loss between images and their expression prompts.

    img_emb (B, D) and class_emb (C, D) normalised, labels (B,) class indices. Image -> text: cross-entropy
    over the C class prompts. Text -> image: for each image's prompt, softmax over the batch's images, with
    every image of the same class a positive (uniform target). The mean of the two directions.
    """
    logits = logit_scale * img_emb @ class_emb.T                                   # (B, C)
    image_to_text = F.cross_entropy(logits, labels)
    per_prompt = logit_scale * class_emb[labels] @ img_emb.T                       # (B, B)
    same = (labels.unsqueeze(0) == labels.unsqueeze(1)).float()
    text_to_image = F.cross_entropy(per_prompt, same / same.sum(dim=1, keepdim=True))
    return (image_to_text + text_to_image) / 2


class ClipAdapter(nn.Module):
    """Frozen CLIP + trainable adaptation of its embedding space for the 8 expressions.

    image: v' = normalise(v + up(relu(down(v))))      (bottleneck D -> D/4 -> D, up starts at zero)
    text:  t'_c = normalise(t_c + W t_c + ctx_c)       (W and the per-class context ctx start at zero)
    logits = s * v' . t'_c with a learnable temperature s (initialised from CLIP's).

    forward(x) -> {"embedding": v' (B,D), "expr": (B,8) logits}; forward_embeddings(v) does the same from
    precomputed CLIP image embeddings (training caches those once, the encoders being frozen).
    """

    ARCH = CLIP_ADAPTER
    tasks = ("expr",)

    def __init__(self, model_name: str = DEFAULT_MODEL, pretrained: str | None = None, prompts="basic",
                 reduction: int = 4):
        super().__init__()
        self.clip = ClipExpression(model_name, pretrained, prompts)
        self.reduction = reduction
        dim = self.clip.embed_dim
        self.down = nn.Linear(dim, dim // reduction, bias=False)
        self.up = nn.Linear(dim // reduction, dim, bias=False)
        self.text_proj = nn.Linear(dim, dim, bias=False)
        self.class_context = nn.Parameter(torch.zeros(len(EXPRESSIONS), dim))
        self.log_scale = nn.Parameter(torch.log(self.clip.logit_scale()))
        for layer in (self.up, self.text_proj):
            nn.init.zeros_(layer.weight)

    @property
    def config(self) -> dict:
        return {"model_name": self.clip.model_name, "pretrained": self.clip.pretrained,
                "prompts": self.clip.prompts.to_dict(), "reduction": self.reduction}

    @property
    def preprocessing(self) -> dict:
        return self.clip.preprocessing

    @property
    def untrained(self) -> bool:
        return self.clip.untrained

    def preprocess(self, frames, device=None) -> torch.Tensor:
        return self.clip.preprocess(frames, device)

    def adapt_image(self, clip_emb: torch.Tensor) -> torch.Tensor:
        v = clip_emb.float()
        return F.normalize(v + self.up(F.relu(self.down(v))), dim=-1)

    def class_embeddings(self) -> torch.Tensor:
        t = self.clip.text_embeddings()
        return F.normalize(t + self.text_proj(t) + self.class_context, dim=-1)

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=100)

    def forward_embeddings(self, clip_emb: torch.Tensor) -> dict[str, torch.Tensor]:
        v = self.adapt_image(clip_emb)
        return {"embedding": v, "expr": self.scale() * v @ self.class_embeddings().T}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_embeddings(self.clip.encode_images(x))

    # -- as an encoder (core.predict): raw CLIP embeddings ("clip") or its own ("clip-adapter") -----------
    @property
    def zero_shot_clip(self) -> ClipExpression:
        return self.clip

    def encoder_kind(self, adapted: bool = True) -> str:
        return "clip-adapter" if adapted else "clip"

    def embedding_dim(self, kind: str) -> int:
        return self.clip.embed_dim

    def embedding_key(self, kind: str) -> str:
        if kind == "clip":
            return self.clip.embedding_key(kind)
        return state_key([self], {**self.preprocessing, "model": self.clip.model_name, "adapted": True})

    def embeddings(self, x: torch.Tensor, kind: str, batch_size: int, amp: bool) -> torch.Tensor:
        raw = self.clip.embeddings(x, "clip", batch_size, amp)
        if kind == "clip":
            return raw
        return self.forward_embeddings(raw.to(self.log_scale.device))["embedding"].float().cpu()

    def adapt(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_embeddings(raw)

    def loss(self, clip_emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Contrastive loss of a batch of (precomputed CLIP image embedding, expression index) pairs."""
        return contrastive_loss(self.adapt_image(clip_emb), self.class_embeddings(), labels, self.scale())

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """The adapter; plus the CLIP weights when they are random (a tag or file rebuilds them otherwise)."""
        return {k: v for k, v in self.state_dict().items() if self.untrained or not k.startswith("clip.")}

    def load_checkpoint_state_dict(self, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
        """Load what checkpoint_state_dict wrote; returns (missing, unexpected) names."""
        expected = set(self.checkpoint_state_dict())
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        if not missing and not unexpected:
            self.load_state_dict(state, strict=False)
        return missing, unexpected


def _create_open_clip(model_name: str, pretrained: str | None):
    """open_clip model with weights from core/weights (Hub cache, offline-aware), or random."""
    import open_clip

    if pretrained is None:
        if model_name not in open_clip.list_models():
            raise WeightsError(f"unknown open_clip model {model_name!r}")
        return open_clip.create_model(model_name, pretrained=None)
    src = resolve(f"open_clip:{model_name}:{pretrained}")
    try:
        cfg = src.tag_cfg
        preprocess = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
        return open_clip.create_model(model_name, pretrained=str(src.path),
                                      force_quick_gelu=bool(cfg.get("quick_gelu", False)),
                                      force_preprocess_cfg=preprocess)
    except Exception as e:
        raise WeightsError(f"open_clip:{model_name}:{pretrained}: cannot build the model "
                           f"({e.__class__.__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None


@register_architecture("clip")
def build_clip(weights, model_name: str = DEFAULT_MODEL, prompts="basic"):
    """Zero-shot CLIP (random, an open_clip tag such as "openai" or "ViT-B-32:openai", or an open_clip
    weight file), or a trained ClipAdapter when `weights` is one of our clip-adapter checkpoints."""
    import open_clip

    if weights is None:
        model = ClipExpression(model_name, None, prompts)
        return model, "random", model.tasks, {}
    src = parse_spec(weights)
    bare_tag = src.kind == "file" and not src.path.exists()
    if bare_tag and src.spec in open_clip.list_pretrained_tags_by_model(model_name):
        src = parse_spec(f"open_clip:{model_name}:{src.spec}")
    if src.kind == "open_clip":
        model = ClipExpression(src.model_name, src.pretrained, prompts)
        meta = {"open_clip": {"model_name": src.model_name, "pretrained": src.pretrained}}
        return model, src.spec, model.tasks if model.untrained else (), meta
    path = resolve(src.spec).path
    ckpt = read_checkpoint(path, source=src.spec)
    if ckpt.architecture == ClipAdapter.ARCH:
        return _adapter_from_checkpoint(ckpt)
    if ckpt.architecture != "state_dict":
        raise WeightsError(f"{src.spec} is a {ckpt.architecture} checkpoint, not CLIP weights")
    model = ClipExpression(model_name, str(path), prompts)
    return model, src.spec, (), {"open_clip": {"model_name": model_name, "pretrained": src.spec}}


def _adapter_from_checkpoint(ckpt):
    model = ClipAdapter(**ckpt.config)
    missing, unexpected = model.load_checkpoint_state_dict(ckpt.state_dict)
    if missing or unexpected:
        raise WeightsError(f"{ckpt.source} does not fit ClipAdapter: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    return model, ckpt.source, (), ckpt.metadata


@register_architecture("clip-adapter", aliases=("clip-prompted",))
def build_clip_adapter(weights, model_name: str = DEFAULT_MODEL, pretrained: str | None = None, **options):
    """A fresh adapter on CLIP `model_name`/`pretrained` (zero-initialised: it predicts like zero-shot
    CLIP until trained, so it is untrained only when CLIP itself is random), or one of our checkpoints."""
    if weights is None:
        model = ClipAdapter(model_name, pretrained, **options)
        return model, "random", model.tasks if model.untrained else (), {}
    ckpt = load_checkpoint(weights, architecture=ClipAdapter.ARCH)
    if options or pretrained is not None:
        raise TypeError(f"options apply when building without weights, not to {ckpt.source}")
    return _adapter_from_checkpoint(ckpt)

