"""Named weights (`ddamfn:affectnet8`, ...): the DDAMFN authors' files, downloaded once from a server, checked
against their git blob id, kept in the Hugging Face cache folder and read from there offline. No test reaches
the internet: a server on 127.0.0.1 serves checkpoints in upstream's format that the test makes, and the
table's blob id is set to the served file's where a test needs the file accepted. The backbone file is made
as upstream's is: torch.save of a whole MixedFeatureNet module whose classes live in `networks.MixedFeatureNet`."""
import dataclasses
import functools
import http.server
import io
import json
import socket
import sys
import threading
import time
import types
import warnings

import huggingface_hub.constants
import pytest
import torch

from core import upstream
from core.analyze import main as analyze
from torch import nn

from core.labels import AFFECTNET7, AFFECTNET8, EXPRESSIONS, TASKS
from core.models import create_model
from core.models import ddamfn
from core.models.ddamfn import DDAMNet
from core.weights import WeightsError, load_checkpoint, resolve
from tests.models_helpers import fill_state, seeded_images, upstream_state
from core.analysis import RunInfo
from training.config import load_preset
from training.extract import load_encoder
from training.recipes import ddamfn_from
from webapp.analyses import Analyses
from webapp.config import AppConfig
from webapp.context import Context
from webapp.labels import Labels
from webapp.models import Models
from webapp.results import output_names


class Server:
    """Files under `root` over HTTP on 127.0.0.1, counting the GET requests."""

    def __init__(self, root):
        self.root, self.gets = root, []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.gets.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, named: upstream.Named, data: bytes) -> None:
        path = self.root / named.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A test server as the upstream address, online (HF_HUB_OFFLINE unset), an empty Hub cache."""
    (tmp_path / "upstream").mkdir()
    s = Server(tmp_path / "upstream")
    monkeypatch.setenv("AFFECTLENS_UPSTREAM_URL", s.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    yield s
    s.close()


def checkpoint_bytes(num_class: int, seed: int = 0) -> bytes:
    """An upstream DDAMFN++ checkpoint as the authors' training scripts save it, as its bytes: {'iter',
    'model_state_dict', 'optimizer_state_dict'}, the optimizer being SAM over Adam (the davda54/sam state:
    each parameter's `old_p`, one param group with SAM's and Adam's settings)."""
    net = DDAMNet(num_class=num_class)
    if num_class == 8:
        state = upstream_state()
    else:
        state = fill_state([(k, tuple(v.shape)) for k, v in net.state_dict().items()], seed=seed)
    params = [name for name, _ in net.named_parameters()]
    optimizer = {"state": {i: {"old_p": state[name].clone()} for i, name in enumerate(params)},
                 "param_groups": [{"rho": 0.05, "adaptive": False, "lr": 5e-4 * 0.9 ** 24, "betas": (0.9, 0.999),
                                   "eps": 1e-08, "weight_decay": 0, "amsgrad": False, "maximize": False,
                                   "foreach": None, "capturable": False, "differentiable": False, "fused": None,
                                   "initial_lr": 5e-4, "params": list(range(len(params)))}]}
    buffer = io.BytesIO()
    torch.save({"iter": 25, "model_state_dict": state, "optimizer_state_dict": optimizer}, buffer)
    return buffer.getvalue()


# Upstream's MixedFeatureNet classes, by the names its pickle stores, over our blocks with the same attributes.
UPSTREAM_CLASSES = {ddamfn.ConvBlock: "Conv_block", ddamfn.LinearBlock: "Linear_block", ddamfn.MixDepthWise: "Mix_Depth_Wise",
                    ddamfn.MixedDepthwiseConv: "MDConv", ddamfn.CoordAttention: "CoordAtt", ddamfn.MixResidual: "Mix_Residual"}


class Flatten(nn.Module):
    pass


def backbone_bytes(legacy: bool = False) -> tuple[bytes, dict[str, torch.Tensor]]:
    """Upstream's pretrained/MFN_msceleb.pth as its bytes, and the MixedFeatureNet state dict in it: a whole
    pickled MixedFeatureNet (conv1 ... conv_6_sep, then conv_6_dw, conv_6_flatten, linear, bn), its classes in
    the module networks.MixedFeatureNet (its CoordAtt also holds pool_h, pool_w and an h_swish, as upstream's)."""
    module = types.ModuleType("networks.MixedFeatureNet")
    classes = {ours: type(name, (ours,), {"__module__": module.__name__}) for ours, name in UPSTREAM_CLASSES.items()}
    for name, cls in [("MixedFeatureNet", nn.Module), ("Flatten", Flatten), ("h_sigmoid", nn.Module), ("h_swish", nn.Module)]:
        classes[name] = type(name, (cls,), {"__module__": module.__name__})
    for cls in classes.values():
        setattr(module, cls.__name__, cls)

    net = classes["MixedFeatureNet"]()
    stages = ddamfn.mixed_feature_net_features()
    for name, stage in zip(["conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4", "conv_45", "conv_5",
                            "conv_6_sep"], stages):
        setattr(net, name, stage)
    net.conv_6_dw = ddamfn.LinearBlock(512, 512, kernel=7, groups=512)
    net.conv_6_flatten = classes["Flatten"]()
    net.linear = nn.Linear(512, 256, bias=False)
    net.bn = nn.BatchNorm1d(256)
    for m in list(net.modules()):
        if type(m) in classes:
            m.__class__ = classes[type(m)]
        if type(m).__name__ == "CoordAtt":
            m.pool_h, m.pool_w = nn.AdaptiveAvgPool2d((None, 1)), nn.AdaptiveAvgPool2d((1, None))
            m.relu = classes["h_swish"]()
            m.relu.sigmoid = classes["h_sigmoid"]()
            m.relu.sigmoid.relu = nn.ReLU6(inplace=True)
    net.load_state_dict(fill_state([(k, tuple(v.shape)) for k, v in net.state_dict().items()], seed=7))
    buffer = io.BytesIO()
    sys.modules.update({"networks": types.ModuleType("networks"), module.__name__: module})
    try:
        with warnings.catch_warnings():         # the legacy format looks for the classes' source text
            warnings.simplefilter("ignore", UserWarning)
            torch.save(net, buffer, _use_new_zipfile_serialization=not legacy)
    finally:
        del sys.modules["networks"], sys.modules[module.__name__]     # AffectLens reads it without them
    return buffer.getvalue(), net.state_dict()


def accept(monkeypatch, name: str, data: bytes) -> upstream.Named:
    """The table's entry `name` with the git blob id of the test's file (the real ids name the authors')."""
    named = dataclasses.replace(upstream.NAMED[name], blob=upstream.blob_id(data))
    monkeypatch.setitem(upstream.NAMED, name, named)
    return named


def test_blob_id_is_gits():
    # `printf hello | git hash-object --stdin`
    assert upstream.blob_id(b"hello") == "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"


def test_download_once_checked_cached_and_loaded_offline(server, monkeypatch, tmp_path):
    data = checkpoint_bytes(8)
    named = accept(monkeypatch, "affectnet8", data)
    server.serve(named, data)

    path = resolve("ddamfn:affectnet8").path
    assert path == tmp_path / "hub" / "github--SainingZhang--DDAMFN" / named.blob / "affecnet8_epoch25_acc0.6469.pth"
    assert path.read_bytes() == data
    assert server.gets == ["/DDAMFN++/checkpoints_ver2.0/affecnet8_epoch25_acc0.6469.pth"]
    assert resolve("ddamfn:affectnet8").path == path and len(server.gets) == 1      # once

    server.close()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = create_model("ddamfn", weights="ddamfn:affectnet8", device="cpu")
    info = loaded.info
    assert info.source == "ddamfn:affectnet8" and info.tasks == ("va", "expr", "au")
    assert info.untrained_tasks == ("va", "au")
    assert info.metadata["trained_on"] == "AffectNet, 8 classes"
    assert info.metadata["upstream_figure"] == "64.69 % accuracy"
    assert info.metadata["classifier_order"] == list(AFFECTNET8)
    with torch.no_grad():
        out = loaded.model(seeded_images(5, 6))
    assert torch.equal(out["expr"][:, EXPRESSIONS.index("Happiness")], out["fc"][:, AFFECTNET8.index("Happy")])


def test_a_wrong_blob_id_is_refused_and_nothing_is_cached(server, tmp_path):
    data = checkpoint_bytes(8)
    named = upstream.NAMED["affectnet8"]                # the authors' id: the test's file is not theirs
    server.serve(named, data)
    with pytest.raises(WeightsError) as e:
        resolve("ddamfn:affectnet8")
    assert str(e.value) == (f"ddamfn:affectnet8: the file at {server.url}/{named.path} is not upstream's (git blob id "
                            f"{upstream.blob_id(data)}, expected {named.blob}); nothing was kept")
    assert not list((tmp_path / "hub").rglob("*.pth*"))


def test_a_wrong_file_in_the_cache_is_refused(server, tmp_path):
    named = upstream.NAMED["rafdb"]
    path = upstream.cache_path(named)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the file")
    with pytest.raises(WeightsError) as e:
        resolve("ddamfn:rafdb")
    assert str(e.value) == (f"ddamfn:rafdb: {path} is not upstream's file (git blob id "
                            f"{upstream.blob_id(b'not the file')}, expected {named.blob}): delete it, or put "
                            f"{server.url}/{named.path} there")
    assert server.gets == []


def test_offline_with_an_empty_cache_says_where_to_put_the_file(server, monkeypatch, tmp_path):
    named = upstream.NAMED["affectnet8"]
    where = tmp_path / "hub" / "github--SainingZhang--DDAMFN" / named.blob / "affecnet8_epoch25_acc0.6469.pth"
    advice = f"download {server.url}/DDAMFN++/checkpoints_ver2.0/affecnet8_epoch25_acc0.6469.pth and put it at {where}"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsError) as e:
        resolve("ddamfn:affectnet8")
    assert str(e.value) == f"ddamfn:affectnet8: not in the local cache and HF_HUB_OFFLINE is set: {advice}"

    monkeypatch.delenv("HF_HUB_OFFLINE")
    server.close()                                      # nothing listens there any more
    with pytest.raises(WeightsError) as e:
        resolve("ddamfn:affectnet8")
    message = str(e.value)
    assert message.startswith("ddamfn:affectnet8: not in the local cache and 127.0.0.1 is unreachable (")
    assert message.endswith(f"): {advice}") and "\n" not in message
    assert time.monotonic() - start < 5
    assert server.gets == []


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(WeightsError) as e:
        resolve("ddamfn:fer2013")
    assert str(e.value) == ("ddamfn:fer2013: no such named weights (known: ddamfn:affectnet8, ddamfn:affectnet7, "
                            "ddamfn:rafdb, ddamfn:msceleb)")


@pytest.mark.parametrize("name", ["rafdb", "affectnet7"])
def test_seven_class_checkpoints_map_the_authors_order_and_never_say_other(server, monkeypatch, name):
    data = checkpoint_bytes(7, seed=3)
    server.serve(accept(monkeypatch, name, data), data)
    loaded = create_model("ddamfn", weights=f"ddamfn:{name}", device="cpu")
    with torch.no_grad():
        out = loaded.model(seeded_images(6, 64))
    # The authors' class order for both (their scripts' class_names; their RAF-DB confusion matrix's rows hold
    # 73 Fear and 159 Disgust test images at indices 4 and 5, as RAF-DB's test set has).
    authors = ["Neutral", "Happiness", "Sadness", "Surprise", "Fear", "Disgust", "Anger"]
    for i, expression in enumerate(authors):
        assert torch.equal(out["expr"][:, EXPRESSIONS.index(expression)], out["fc"][:, i])
    assert (out["expr"].argmax(dim=1) != EXPRESSIONS.index("Other")).all()
    assert loaded.info.metadata["classifier_order"] == list(AFFECTNET7)


def test_the_run_and_table_mark_va_and_au_untrained_and_expression_trained(server, monkeypatch, tmp_path, media_dir,
                                                                          capsys):
    data = checkpoint_bytes(8)
    server.serve(accept(monkeypatch, "affectnet8", data), data)
    out = tmp_path / "preds.csv"
    code = analyze([str(media_dir / "single_face.mp4"), "--out", str(out), "--models", "ddamfn,lstm",
                    "--device", "cpu", "--max-frames", "4", "--weights", "ddamfn:affectnet8"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "note: DDAMFN: weights ddamfn:affectnet8 (from --weights)" in err.splitlines()
    run = json.loads(out.with_suffix(".run.json").read_text())
    ddamfn = run["models"]["ddamfn"]
    assert ddamfn["source"] == "ddamfn:affectnet8" and ddamfn["untrained_tasks"] == ["va", "au"]
    assert ddamfn["metadata"]["upstream_figure"] == "64.69 % accuracy"
    import pandas as pd

    table = pd.read_csv(out)
    assert table["untrained_expr"].eq(False).all()          # DDAMFN's trained head, before the random LSTM's
    assert table["untrained_va"].eq(True).all() and table["untrained_au"].eq(True).all()
    names = output_names(RunInfo.from_dict(run))            # how the timelines name them
    assert names["expr"] == "DDAMFN" and names["va"].endswith("(untrained)")
    assert names["au"].endswith("(untrained)")


@pytest.mark.parametrize("legacy", [False, True])
def test_the_msceleb_backbone_is_read_without_its_code_and_is_untrained(server, monkeypatch, legacy):
    data, mfn = backbone_bytes(legacy)
    server.serve(accept(monkeypatch, "msceleb", data), data)
    ckpt = load_checkpoint("ddamfn:msceleb", architecture="ddamfn")
    assert ckpt.architecture == "ddamfn-backbone"
    assert ckpt.metadata["pickled_as"] == "networks.MixedFeatureNet.MixedFeatureNet"
    assert ckpt.metadata["trained_on"] == "MS-Celeb-1M faces"
    assert "networks" not in sys.modules

    loaded = create_model("ddamfn", weights="ddamfn:msceleb", device="cpu")
    assert loaded.info.source == "ddamfn:msceleb" and loaded.info.untrained is True
    assert loaded.info.untrained_tasks == TASKS                     # no head of it is trained
    features = loaded.model.net.features.state_dict()
    stages = ["conv1", "conv2_dw", "conv_23", "conv_3", "conv_34", "conv_4", "conv_45", "conv_5", "conv_6_sep"]
    for i, stage in enumerate(stages):
        for key, value in features.items():
            if key.startswith(f"{i}."):
                assert torch.equal(value, mfn[f"{stage}.{key.split('.', 1)[1]}"]), key
    assert len(features) == sum(1 for k in mfn if k.split(".")[0] in stages)


def test_training_starts_from_the_backbone_as_the_authors_recipes_do(server, monkeypatch):
    data, mfn = backbone_bytes()
    server.serve(accept(monkeypatch, "msceleb", data), data)
    model = ddamfn_from("ddamfn:msceleb", ("expr",))
    assert torch.equal(model.net.features[0].conv.weight, mfn["conv1.conv.weight"])
    assert torch.equal(model.net.features[8].bn.running_var, mfn["conv_6_sep.bn.running_var"])
    for preset in ("ddamfn-expr", "ddamfn-va", "ddamfn-au", "ddamfn-mtl"):   # the presets that fine-tune it
        assert load_preset(preset)["weights"] == "ddamfn:msceleb"


def test_a_pickled_module_that_is_not_the_backbone_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(nn.Sequential(nn.Linear(2, 2)), path)
    with pytest.raises(WeightsError) as e:
        load_checkpoint(str(path))
    assert str(e.value) == (f"{path} is a pickled torch.nn.modules.container.Sequential module, not upstream's "
                            "MixedFeatureNet backbone: AffectLens cannot use it")


def test_the_audit_encoder_can_be_named(server, monkeypatch):
    data = checkpoint_bytes(8)
    server.serve(accept(monkeypatch, "affectnet8", data), data)
    encoder = load_encoder("ddamfn", "ddamfn:affectnet8", device="cpu")
    assert encoder.loaded.info.source == "ddamfn:affectnet8"
    assert encoder.loaded.info.metadata["trained_on"] == "AffectNet, 8 classes"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_space_starts_with_the_authors_ddamfn_and_its_weights_box_says_what_it_knows(server, monkeypatch,
                                                                                       tmp_path):
    data = checkpoint_bytes(8)
    server.serve(accept(monkeypatch, "affectnet8", data), data)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")     # CLIP's default cannot be had
    config = AppConfig.from_env({"AFFECTLENS_DEVICE": "cpu", "AFFECTLENS_DATA_DIR": str(tmp_path / "data"),
                                 "AFFECTLENS_DB_URL": f"sqlite:///{tmp_path / 'app.db'}"})
    assert config.weights["ddamfn"] == "ddamfn:affectnet8" and config.weights["lstm"] is None
    assert "DDAMFN: no weights configured: using the default ddamfn:affectnet8" in config.startup_log()
    assert server.gets == ["/DDAMFN++/checkpoints_ver2.0/affecnet8_epoch25_acc0.6469.pth"]

    ctx = Context(config)
    box = Analyses(ctx, Models(ctx), Labels(ctx)).weights_overview()
    assert ("| ddamfn | `ddamfn:affectnet8` | expr trained (AffectNet, 8 classes; upstream: 64.69 % accuracy); "
            "**untrained**: va, au (random heads, fixed seed) |") in box
    assert "| lstm | `random` | **untrained** (random weights, fixed seed) |" in box


def test_offline_the_start_up_log_says_in_one_line_how_to_get_them(server, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = AppConfig.from_env({})
    assert config.weights["ddamfn"] is None
    named = upstream.NAMED["affectnet8"]
    assert [line for line in config.startup_log() if line.startswith("DDAMFN:")] == [
        f"DDAMFN: no weights configured and the default cannot be had (ddamfn:affectnet8: not in the local cache "
        f"and HF_HUB_OFFLINE is set: download {server.url}/{named.path} and put it at {upstream.cache_path(named)}): "
        "DDAMFN is random, untrained"]
