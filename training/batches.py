"""Training batches that BatchNorm can always take.

BatchNorm in training mode refuses a batch of one sample, and the size of a training set changes with every
reviewed upload, so any batch size can leave a single sample over. Every training path (`training.loop` and the
audit's fold training) draws its batches here: a last batch of one is merged into the batch before it, so every
sample is still seen once per epoch. Evaluation keeps its own loaders (every frame, any batch size).
"""
from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import BatchSampler, Sampler


class TrainingBatches(BatchSampler):
    """Batches of `batch_size` (>= 2) indices from `sampler`; a lone last index joins the batch before it (with
    batch_size >= 2 only the last batch can hold one index)."""

    def __init__(self, sampler: Sampler, batch_size: int):
        super().__init__(sampler, batch_size, drop_last=False)
        if batch_size < 2:
            raise ValueError(f"a training batch size of {batch_size} is too small: at least 2 (BatchNorm needs two "
                             "samples per batch)")
        if len(sampler) == 1:
            raise ValueError("one training sample is too few to train on: at least two are needed")

    def __iter__(self) -> Iterator[list[int]]:
        pending: list[int] | None = None
        for batch in super().__iter__():
            if pending is not None:
                if len(batch) == 1:
                    yield pending + batch
                    return
                yield pending
            pending = batch
        if pending is not None:
            yield pending

    def __len__(self) -> int:
        n = len(self.sampler)
        full, left = divmod(n, self.batch_size)
        return full + (1 if left > 1 or (left == 1 and full == 0) else 0)
