"""Task heads shared by every model: one linear layer per ABAW task on top of an embedding.

Outputs use the label orders of core/labels: va (2, tanh so in [-1, 1]), expr (8 logits, Aff-Wild2
order), au (12 logits, one per AU in AUS order).
"""
from __future__ import annotations

import torch
from torch import nn

from core.labels import AUS, EXPRESSIONS, TASKS, VA_NAMES

TASK_DIMS = {"va": len(VA_NAMES), "expr": len(EXPRESSIONS), "au": len(AUS)}


def check_tasks(tasks) -> tuple[str, ...]:
    """Validate a task list (any non-empty subset of TASKS) and return it in canonical order."""
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tasks}")
    return tuple(t for t in TASKS if t in tasks)


class TaskHeads(nn.Module):
    """A linear head per task; `forward(emb (..., D)) -> {task: (..., dim)}`."""

    def __init__(self, in_dim: int, tasks=TASKS):
        super().__init__()
        self.tasks = check_tasks(tasks)
        self.layers = nn.ModuleDict({t: nn.Linear(in_dim, TASK_DIMS[t]) for t in self.tasks})

    def forward(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {t: layer(emb) for t, layer in self.layers.items()}
        if "va" in out:
            out["va"] = torch.tanh(out["va"])
        return out
