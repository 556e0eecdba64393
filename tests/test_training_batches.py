"""A last training batch of one sample (BatchNorm refuses it in training mode) never kills training: every
recipe trains at n = k * batch + 1 samples, and the audit's fold training takes the same batches."""
import pytest
import torch
from torch import nn
from torch.utils.data import SequentialSampler

from core.labels import EXPRESSIONS, TASKS
from core.models.clip import ClipAdapter, PromptSet
from core.models.ddamfn import DDAMFN
from core.weights import save_checkpoint
from tests.datagen import make_affwild2
from training import config
from training.batches import TrainingBatches
from training.data import load_labels
from training.loop import train
from training.recipes import make_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("n, batch, sizes", [(9, 4, [4, 5]), (5, 4, [5]), (8, 4, [4, 4]), (10, 4, [4, 4, 2]),
                                             (3, 4, [3]), (2, 2, [2])])
def test_a_lone_last_sample_joins_the_batch_before_it(n, batch, sizes):
    batches = list(TrainingBatches(SequentialSampler(range(n)), batch))
    assert [len(b) for b in batches] == sizes and len(TrainingBatches(SequentialSampler(range(n)), batch)) == len(sizes)
    assert sorted(i for b in batches for i in b) == list(range(n))          # every sample once per epoch


def test_one_sample_or_a_batch_size_of_one_is_refused_in_words():
    with pytest.raises(ValueError, match="one training sample is too few to train on"):
        TrainingBatches(SequentialSampler(range(1)), 4)
    with pytest.raises(ValueError, match="a training batch size of 1 is too small: at least 2"):
        TrainingBatches(SequentialSampler(range(5)), 1)


def test_batchnorm_takes_every_batch():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).train()
    data = torch.randn(13, 3)
    for rows in TrainingBatches(SequentialSampler(range(13)), 4):
        net(data[rows])                                                     # a batch of one would raise here


@pytest.fixture(scope="module")
def small_root(tmp_path_factory, media_dir):
    return make_affwild2(tmp_path_factory.mktemp("batches"), n_frames=8, raw_videos=False, media_dir=media_dir).root


def _settings(model, tmp_path):
    if model == "ddamfn":
        return dict(model="ddamfn", tasks="va,expr,au")
    if model in ("ddamfn-heads", "lstm"):
        encoder = save_checkpoint(tmp_path / "ddamfn.pt", DDAMFN(tasks=TASKS).eval())
        window = dict(window=4, stride=2, hidden=16, layers=1) if model == "lstm" else {}
        return dict(model=model, tasks="va,expr,au", weights=str(encoder), cache=str(tmp_path / "cache"), **window)
    prompts = PromptSet("tiny", ("a {} face.",), {e: (e.lower(),) for e in EXPRESSIONS})
    start = save_checkpoint(tmp_path / "clip.pt", ClipAdapter("ViT-S-32", None, prompts))
    return dict(model="clip-adapter", tasks="expr", weights=str(start), cache=str(tmp_path / "cache"))


@pytest.mark.parametrize("model", ["ddamfn", "ddamfn-heads", "lstm", "clip-adapter"])
def test_every_recipe_trains_when_one_sample_is_left_over(model, small_root, tmp_path):
    def cfg(batch):
        return config.build(config.TrainConfig, "tiny", root=str(small_root), out=str(tmp_path / "run"),
                            corrections=False, batch_size=batch, steps_per_epoch=0, **_settings(model, tmp_path))
    probe = cfg(4)
    n = len(make_recipe(probe, load_labels(probe.root, probe.tasks, "train", False, probe.db),
                        load_labels(probe.root, probe.tasks, "val", False, probe.db), torch.device("cpu")).train_set)
    batch = next(b for b in range(2, n) if n % b == 1)                      # n = k * batch + 1
    best = train(cfg(batch))
    assert best.exists()
