"""The page's model cache (webapp.context) is bounded by bytes (AFFECTLENS_MODEL_CACHE_MB): ten different
DDAMFN checkpoints picked in turn leave at most the budget's worth of models loaded, and a model an
analysis is using is never dropped: it stays loaded and is handed out again instead of being loaded twice."""
import gc
import os
import weakref

import torch

from core.analysis import AnalysisConfig
from core.models import create_model
from core.weights import save_checkpoint
from webapp.config import AppConfig
from webapp.context import Context, model_bytes


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_ten_checkpoints_picked_in_turn_stay_within_the_cache_budget(tmp_path):
    ddamfn = create_model("ddamfn", None, device="cpu")
    size = model_bytes(ddamfn)
    paths = []
    with torch.no_grad():
        for i in range(10):
            for p in ddamfn.model.parameters():
                p.add_(0.01)
            paths.append(save_checkpoint(tmp_path / f"ddamfn-{i}.pt", ddamfn.model))
    del ddamfn
    budget_mb = 2.5 * size / 2**20                       # room for two of them
    ctx = Context(AppConfig(db_url=f"sqlite:///{tmp_path / 'review.db'}", data_dir=tmp_path / "data",
                            cache_dir=tmp_path / "cache", device="cpu", model_cache_mb=budget_mb))

    def pick(path):
        return ctx.loaded_models(AnalysisConfig(models=("ddamfn",), weights={"ddamfn": str(path)}, device="cpu"))

    in_use = pick(paths[0])                               # an analysis holds the first throughout
    held = in_use.models["ddamfn"]
    picked, figures = [weakref.ref(held)], []
    for path in paths[1:]:
        picked.append(weakref.ref(pick(path).models["ddamfn"]))
        gc.collect()
        loaded = [i for i, ref in enumerate(picked) if ref() is not None]
        figures.append((len(picked), ctx.kept_model_bytes() / 2**20, len(loaded) * size / 2**20, resident_mib()))
        assert ctx.kept_model_bytes() <= budget_mb * 2**20
        n = len(picked)       # the one in use and the two newest (kept): nothing else stays loaded
        assert loaded == ([0, n - 2, n - 1] if n > 3 else list(range(n)))
    print(f"\nDDAMFN {size / 2**20:.1f} MiB, budget {budget_mb:.1f} MiB; after each pick: checkpoints picked, "
          "MiB kept, MiB of DDAMFN weights loaded, process resident MiB")
    for row in figures:
        print("%2d  %6.1f  %6.1f  %8.1f" % row)
    assert pick(paths[0]).models["ddamfn"] is held        # in use: the same object, not loaded again
