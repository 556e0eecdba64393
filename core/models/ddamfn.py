"""DDAMFN: the Dual-Direction Attention Mixed Feature Network, with ABAW task heads.

`DDAMNet` rebuilds upstream DDAMNet (github SainingZhang/DDAMFN, networks/DDAM.py and
networks/MixedFeatureNet.py) with the same parameter names and shapes, so its published checkpoints load
with strict key matching and give the same outputs. Our own code; only the facts (names, sizes, order of
operations) follow upstream. Unlike upstream, the constructor builds an untrained model and reads no file;
core/weights loads weights.

`DDAMFN` wraps it (as `.net`) and adds the valence-arousal, expression and AU heads beside the upstream
classifier `fc`, which keeps its AffectNet-order classes.
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

from core.device import run_batched
from core.labels import AFFECTNET8, TASKS, affectnet8_to_affwild2_logits
from core.models.heads import TaskHeads, check_tasks
from core.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_images
from core.registry import ModelCard, register_architecture, register_card
from core.weights import (UPSTREAM_BACKBONE, UPSTREAM_DDAMFN, Checkpoint, check_loaded, default_ddamfn_weights,
                          load_checkpoint, load_state, state_key)

INPUT_SIZE = 112
EMBED_DIM = 512
# Upstream preprocessing at test time: Resize((112, 112)), ToTensor, Normalize(ImageNet mean/std).
PREPROCESSING = {"size": INPUT_SIZE, "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "resize": "squash",
                 "interpolation": "bilinear", "color": "RGB"}


def preprocess(frames, device=None) -> torch.Tensor:
    """uint8 RGB face crops (B, H, W, 3) or one HxWx3 -> normalised float (B, 3, 112, 112) on `device`."""
    return normalize_images(frames, INPUT_SIZE, IMAGENET_MEAN, IMAGENET_STD, device=device)


# ---------------------------------------------------------------------------------------------------
# MixedFeatureNet building blocks (upstream networks/MixedFeatureNet.py names: conv, bn, prelu, ...)

class ConvBlock(nn.Module):
    """conv -> bn -> prelu (upstream `Conv_block`)."""

    def __init__(self, in_c, out_c, kernel=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)
        self.prelu = nn.PReLU(out_c)

    def forward(self, x):
        return self.prelu(self.bn(self.conv(x)))


class LinearBlock(nn.Module):
    """conv -> bn, no activation (upstream `Linear_block`); with groups=channels and a 7x7 kernel it is
    the GDConv that pools a 7x7 map into one vector."""

    def __init__(self, in_c, out_c, kernel=1, stride=1, padding=0, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride=stride, padding=padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)

    def forward(self, x):
        return self.bn(self.conv(x))


def hard_swish(x):
    return x * (F.relu6(x + 3.0) / 6.0)


class MixedDepthwiseConv(nn.Module):
    """Depthwise convolutions with several kernel sizes on channel groups (upstream `MDConv`).

    Upstream registers `bn` and `prelu` here but never applies them; they stay so that checkpoints load.
    """

    def __init__(self, channels, kernel_sizes, split_channels, stride):
        super().__init__()
        assert sum(split_channels) == channels
        self.split_channels = list(split_channels)
        self.mixed_depthwise_conv = nn.ModuleList(
            nn.Conv2d(c, c, k, stride=stride, padding=k // 2, groups=c, bias=False)
            for c, k in zip(split_channels, kernel_sizes))
        self.bn = nn.BatchNorm2d(channels)
        self.prelu = nn.PReLU(channels)

    def forward(self, x):
        parts = torch.split(x, self.split_channels, dim=1)
        return torch.cat([conv(p) for conv, p in zip(self.mixed_depthwise_conv, parts)], dim=1)


class CoordAttention(nn.Module):
    """Coordinate attention inside the backbone blocks (upstream MixedFeatureNet `CoordAtt`): average
    pools along each axis, a shared 1x1 bottleneck, then per-axis sigmoid gates multiplied into x."""

    def __init__(self, channels, groups=32):
        super().__init__()
        mip = max(8, channels // groups)
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.conv2 = nn.Conv2d(mip, channels, 1)
        self.conv3 = nn.Conv2d(mip, channels, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        along_h = x.mean(dim=3, keepdim=True)                      # (B, C, H, 1)
        along_w = x.mean(dim=2, keepdim=True).transpose(2, 3)      # (B, C, W, 1)
        y = hard_swish(self.bn1(self.conv1(torch.cat([along_h, along_w], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        gate_h = self.conv2(y_h).sigmoid()                         # (B, C, H, 1)
        gate_w = self.conv3(y_w.transpose(2, 3)).sigmoid()         # (B, C, 1, W)
        return x * gate_w * gate_h


class MixDepthWise(nn.Module):
    """1x1 expand -> mixed depthwise -> coordinate attention -> 1x1 project, optional residual
    (upstream `Mix_Depth_Wise`)."""

    def __init__(self, in_c, out_c, width, kernel_sizes, split_channels, stride=1, residual=False):
        super().__init__()
        self.conv = ConvBlock(in_c, width)
        self.conv_dw = MixedDepthwiseConv(width, kernel_sizes, split_channels, stride)
        self.CA = CoordAttention(width)
        self.project = LinearBlock(width, out_c)
        self.residual = residual

    def forward(self, x):
        y = self.project(self.CA(self.conv_dw(self.conv(x))))
        return x + y if self.residual else y


class MixResidual(nn.Module):
    """`num_block` residual MixDepthWise blocks in a Sequential called `model` (upstream `Mix_Residual`)."""

    def __init__(self, channels, num_block, width, kernel_sizes, split_channels):
        super().__init__()
        self.model = nn.Sequential(*(
            MixDepthWise(channels, channels, width, kernel_sizes, split_channels, residual=True)
            for _ in range(num_block)))

    def forward(self, x):
        return self.model(x)


def mixed_feature_net_features() -> nn.Sequential:
    """The MixedFeatureNet stages DDAMNet keeps (all but its last four children): 112x112x3 -> 7x7x512.

    Indices are the checkpoint prefixes `features.<i>`; comments give the upstream attribute names.
    """
    return nn.Sequential(
        ConvBlock(3, 64, kernel=3, stride=2, padding=1),                                   # conv1   56x56
        ConvBlock(64, 64, kernel=3, stride=1, padding=1, groups=64),                       # conv2_dw
        MixDepthWise(64, 64, 128, [3, 5, 7], [64, 32, 32], stride=2),                      # conv_23 28x28
        MixResidual(64, 9, 128, [3, 5], [96, 32]),                                         # conv_3
        MixDepthWise(64, 128, 256, [3, 5, 7], [128, 64, 64], stride=2),                    # conv_34 14x14
        MixResidual(128, 16, 256, [3, 5], [192, 64]),                                      # conv_4
        MixDepthWise(128, 256, 1024, [3, 5, 7, 9], [256, 256, 256, 256], stride=2),        # conv_45 7x7
        MixResidual(256, 6, 512, [3, 5, 7], [172, 170, 170]),                              # conv_5
        ConvBlock(256, 512),                                                               # conv_6_sep
    )


# ---------------------------------------------------------------------------------------------------
# DDAMNet (upstream networks/DDAM.py names: features, cat_head<i>.CoordAtt, Linear, fc, bn)

class DualDirectionAttention(nn.Module):
    """One attention head (upstream DDAM `CoordAtt`): 1x7 and 7x1 depthwise convolutions summarise rows
    and columns, a shared 1x1 bottleneck, and two sigmoid gates whose product is the (C, 7, 7) map.

    Upstream also registers a 7x7 `Linear` block here that its forward never uses; kept for checkpoints.
    """

    def __init__(self, channels=EMBED_DIM, groups=32):
        super().__init__()
        mip = max(8, channels // groups)
        self.Linear_h = LinearBlock(channels, channels, kernel=(1, 7), groups=channels)
        self.Linear_w = LinearBlock(channels, channels, kernel=(7, 1), groups=channels)
        self.conv1 = nn.Conv2d(channels, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.conv2 = nn.Conv2d(mip, channels, 1)
        self.conv3 = nn.Conv2d(mip, channels, 1)
        self.Linear = LinearBlock(channels, channels, kernel=7, groups=channels)

    def forward(self, x):
        h, w = x.shape[-2:]
        rows = self.Linear_h(x)                                    # (B, C, H, 1)
        cols = self.Linear_w(x).transpose(2, 3)                    # (B, C, W, 1)
        y = hard_swish(self.bn1(self.conv1(torch.cat([rows, cols], dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        gate_h = self.conv2(y_h).sigmoid()                         # (B, C, H, 1)
        gate_w = self.conv3(y_w.transpose(2, 3)).sigmoid()         # (B, C, 1, W)
        return gate_w * gate_h                                     # (B, C, H, W)


class AttentionHead(nn.Module):
    """Holds one DualDirectionAttention under the upstream name `CoordAtt` (upstream `CoordAttHead`)."""

    def __init__(self):
        super().__init__()
        self.CoordAtt = DualDirectionAttention()

    def forward(self, x):
        return self.CoordAtt(x)


class DDAMNet(nn.Module):
    """Upstream DDAMNet, untrained. `forward(x) -> (logits, feature map (B,512,7,7), [attention maps])`,
    the same triple upstream returns; `forward_features(x) -> (embedding (B,512), attention (B,H,512,7,7))`.

    Upstream also registers `bn` (BatchNorm1d over the classes) and never applies it; kept for checkpoints.
    """

    def __init__(self, num_class: int = 7, num_head: int = 2):
        super().__init__()
        self.num_head = num_head
        self.features = mixed_feature_net_features()
        for i in range(num_head):
            setattr(self, f"cat_head{i}", AttentionHead())
        self.Linear = LinearBlock(EMBED_DIM, EMBED_DIM, kernel=7, groups=EMBED_DIM)
        self.fc = nn.Linear(EMBED_DIM, num_class)
        self.bn = nn.BatchNorm1d(num_class)

    def attention_maps(self, feats) -> list[torch.Tensor]:
        return [getattr(self, f"cat_head{i}")(feats) for i in range(self.num_head)]

    @staticmethod
    def fuse(maps) -> torch.Tensor:
        """The heads' maps fused by element-wise max: what gates the features, (B, 512, 7, 7)."""
        fused = maps[0]
        for m in maps[1:]:
            fused = torch.max(fused, m)
        return fused

    def _pool(self, feats, maps):
        """Fuse the heads by element-wise max, gate the features, GDConv-pool to (B, 512)."""
        return self.Linear(feats * self.fuse(maps)).flatten(1)

    def fused_attention(self, x) -> torch.Tensor:
        """(B, 3, 112, 112) -> the fused attention map (B, 512, 7, 7) that gates the 7x7 features: what
        the model looks at (core.attention draws it)."""
        return self.fuse(self.attention_maps(self.features(x)))

    def forward_features(self, x):
        feats = self.features(x)
        maps = self.attention_maps(feats)
        return self._pool(feats, maps), torch.stack(maps, dim=1)

    def forward(self, x):
        feats = self.features(x)
        maps = self.attention_maps(feats)
        return self.fc(self._pool(feats, maps)), feats, maps


def attention_loss(attention: torch.Tensor, eps: float = sys.float_info.epsilon) -> torch.Tensor:
    """Attention-divergence loss L_at = P / (sum over head pairs of MSE(a_i, a_j) + eps).

    `attention` is (B, H, ...) as returned by DDAMFN; P = H (H - 1) / 2 pairs. Pushing the heads apart
    is what the loss rewards; training adds 0.1 * L_at to the task loss. Zero for a single head.
    """
    heads = attention.shape[1]
    if heads < 2:
        return attention.new_zeros(())
    total = attention.new_zeros(())
    for i in range(heads - 1):
        for j in range(i + 1, heads):
            total = total + F.mse_loss(attention[:, i], attention[:, j])
    pairs = heads * (heads - 1) // 2
    return pairs / (total + eps)


def fc_to_affwild2(logits: torch.Tensor, classes=None) -> torch.Tensor:
    """Upstream classifier scores -> 8 scores in Aff-Wild2 order. `classes`: the classifier's order
    (core.labels: AFFECTNET8, AFFECTNET7); None: AffectNet order, 7 or 8 classes.

    Contempt is dropped; Other has no source and gets the row minimum (see affectnet8_to_affwild2_logits).
    """
    return affectnet8_to_affwild2_logits(logits, classes or AFFECTNET8[:logits.shape[-1]])


class DDAMFN(nn.Module):
    """DDAMNet plus ABAW heads (va, expr, au; any subset) on its 512-d embedding.

    forward(x (B,3,112,112)) -> dict: embedding (B,512), attention (B,heads,512,7,7), fc (B,num_class)
    upstream classifier logits, and per task va (B,2) in [-1,1], expr (B,8) logits in Aff-Wild2 order,
    au (B,12) logits. With `expr_from_fc` the expr output is the upstream classifier remapped to
    Aff-Wild2 order (used for published AffectNet and RAF-DB checkpoints) instead of the expr head;
    `fc_classes` names the classifier's order (None: AffectNet order).
    """

    ARCH = "ddamfn"
    preprocessing = PREPROCESSING
    preprocess = staticmethod(preprocess)    # (frames, device=None) -> input, like the CLIP models'

    def __init__(self, tasks=TASKS, num_class: int = 7, num_head: int = 2, expr_from_fc: bool = False,
                 fc_classes=None):
        super().__init__()
        self.tasks = check_tasks(tasks)
        if expr_from_fc and ("expr" not in self.tasks or num_class not in (7, 8)):
            raise ValueError("expr_from_fc needs the expr task and a 7- or 8-class AffectNet classifier")
        if fc_classes is not None and len(fc_classes) != num_class:
            raise ValueError(f"fc_classes names {len(fc_classes)} classes, the classifier has {num_class}")
        self.expr_from_fc = expr_from_fc
        self.fc_classes = tuple(fc_classes) if fc_classes is not None else None
        self.net = DDAMNet(num_class=num_class, num_head=num_head)
        head_tasks = [t for t in self.tasks if not (t == "expr" and expr_from_fc)]
        self.task_heads = TaskHeads(EMBED_DIM, head_tasks) if head_tasks else None

    @property
    def config(self) -> dict:
        return {"tasks": list(self.tasks), "num_class": self.net.fc.out_features,
                "num_head": self.net.num_head, "expr_from_fc": self.expr_from_fc,
                **({"fc_classes": list(self.fc_classes)} if self.fc_classes else {})}

    def embed(self, x) -> torch.Tensor:
        """(B, 3, 112, 112) -> (B, 512) embedding (the input of every head)."""
        return self.net.forward_features(x)[0]

    def heads(self, emb) -> dict[str, torch.Tensor]:
        """Task outputs (and upstream `fc` logits) from an embedding (..., 512)."""
        out = {"fc": self.net.fc(emb)}
        if self.task_heads is not None:
            out.update(self.task_heads(emb))
        if self.expr_from_fc:
            out["expr"] = fc_to_affwild2(out["fc"], self.fc_classes)
        return out

    def forward(self, x) -> dict[str, torch.Tensor]:
        emb, attention = self.net.forward_features(x)
        return {"embedding": emb, "attention": attention, **self.heads(emb)}

    # -- as an encoder (core.predict): the embeddings it gives, their width and content key -------------
    def encoder_kind(self, adapted: bool = True) -> str:
        return "ddamfn"

    def embedding_dim(self, kind: str) -> int:
        return self.net.fc.in_features

    def embedding_key(self, kind: str) -> str:
        return state_key([self.net], dict(self.preprocessing))

    def embeddings(self, x: torch.Tensor, kind: str, batch_size: int, amp: bool) -> torch.Tensor:
        """(B, 512) float32 on the CPU, channels_last batches (faster everywhere, benchmarks/RESULTS.md)."""
        return run_batched(self.embed, x, batch_size=batch_size, amp=amp, channels_last=True)


def load_upstream(net: DDAMNet, ckpt: Checkpoint) -> None:
    """An upstream checkpoint into `net`, strictly: a whole DDAMNet, or (ddamfn-backbone, upstream's
    MS-Celeb-1M MixedFeatureNet) its `features` alone, the rest staying as it is."""
    if ckpt.architecture == UPSTREAM_BACKBONE:
        load_state(net.features, {k[len("features."):]: v for k, v in ckpt.state_dict.items()}, ckpt.source)
    else:
        load_state(net, ckpt.state_dict, ckpt.source)


@register_architecture("ddamfn")
def build_ddamfn(weights, tasks=None, **options):
    """Random DDAMFN, one of our checkpoints, or an upstream one. An upstream DDAMNet's classifier (AffectNet
    order) mapped to Aff-Wild2 expressions is the trained expr head; the va / au heads asked for (default:
    all) are random, and said to be. Upstream's backbone alone (ddamfn:msceleb) has no head: every task is
    random, and said to be."""
    if weights is None:
        model = DDAMFN(tasks=tasks or TASKS, **options)
        return model, "random", model.tasks, {}
    ckpt = load_checkpoint(weights, architecture="ddamfn")
    if ckpt.architecture in (UPSTREAM_DDAMFN, UPSTREAM_BACKBONE):
        if options:
            raise TypeError(f"options {sorted(options)} do not apply to the upstream checkpoint {ckpt.source}")
        if ckpt.architecture == UPSTREAM_BACKBONE:
            model = DDAMFN(tasks=tasks or TASKS)
            load_upstream(model.net, ckpt)
            meta = {**ckpt.metadata, "heads_source": "random: upstream's backbone has no expression classifier"}
            return model, ckpt.source, model.tasks, meta
        model = DDAMFN(tasks=tasks or TASKS, expr_from_fc="expr" in (tasks or TASKS), **ckpt.config)
        load_upstream(model.net, ckpt)
        random_tasks = tuple(t for t in model.tasks if t != "expr")
        order = ", ".join(model.fc_classes or AFFECTNET8[:model.net.fc.out_features])
        meta = {**ckpt.metadata, "expr_source": f"upstream fc ({order}) mapped to Aff-Wild2 order by "
                "core.labels; Contempt dropped; Other has no source (scored as the row minimum, never predicted)"}
        return model, ckpt.source, random_tasks, meta
    check_loaded(ckpt, tasks, options)
    model = DDAMFN(**ckpt.config)
    load_state(model, ckpt.state_dict, ckpt.source)
    return model, ckpt.source, (), ckpt.metadata


register_card(ModelCard(
    "ddamfn", "DDAMFN", "ddamfn", None, TASKS,
    "DDAMFN per frame: valence-arousal, 8 expressions, 12 AUs from its heads",
    weights_env="AFFECTLENS_WEIGHTS_DDAMFN", default_weights=default_ddamfn_weights,
    checkpoints=("ddamfn", UPSTREAM_DDAMFN, UPSTREAM_BACKBONE),
    training_kinds=("ddamfn", "ddamfn-heads"), encoder_kinds=("ddamfn",)))
register_card(ModelCard(
    "lstm", "DDAMFN+LSTM", "lstm", "ddamfn", TASKS,
    "an LSTM over DDAMFN embeddings: the same outputs with temporal context",
    weights_env="AFFECTLENS_WEIGHTS_LSTM", checkpoints=("lstm",), training_kinds=("lstm",), aliases=("ddamfn-lstm",)))
