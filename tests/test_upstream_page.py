"""The page names the DDAMFN authors' checkpoints as the command line and the variables do (`ddamfn:affectnet8`):
offered among the weights choices, analysed with through the real server (gradio_client), and its run summary
says task by task what the model knows. The checkpoint comes from a server on 127.0.0.1 (tests.test_upstream)."""
import json
import os
import socket
import tempfile
import urllib.request

# This process's own Gradio upload folder (read when gradio is imported), as tests/test_webapp_api.py explains.
os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="affectlens-gradio-"))

import pytest  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from tests import test_upstream  # noqa: E402
from tests.test_upstream import accept, checkpoint_bytes  # noqa: E402
from webapp.app import build_app, launch  # noqa: E402
from webapp.config import AppConfig  # noqa: E402

server = test_upstream.server      # the fixture: the authors' files served from 127.0.0.1
CHOICE = ("ddamfn:affectnet8: the DDAMFN authors' AffectNet, 8 classes checkpoint (64.69 % accuracy)",
          "ddamfn:affectnet8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def page(server, monkeypatch, tmp_path):
    data = checkpoint_bytes(8)
    server.serve(accept(monkeypatch, "affectnet8", data), data)
    cfg = AppConfig(db_url=f"sqlite:///{tmp_path / 'app.db'}", cache_dir=tmp_path / "cache", runs_dir=tmp_path / "runs",
                    data_dir=tmp_path / "data", port=free_port(), clip_model="ViT-S-32", device="cpu",
                    max_duration_s=10, max_upload_mb=2)
    demo = build_app(cfg)
    launch(demo, cfg, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{cfg.port}/"
    demo.close()


def test_the_page_offers_and_runs_the_authors_checkpoint_by_its_name(page, media_dir):
    with urllib.request.urlopen(page + "config", timeout=10) as response:
        config = json.loads(response.read())
    picker = next(c["props"] for c in config["components"] if c["props"].get("elem_id") == "trained-model")
    assert [list(c) for c in picker["choices"][:4]] == [
        ["the app's default weights", 0], list(CHOICE),
        ["ddamfn:affectnet7: the DDAMFN authors' AffectNet, 7 classes checkpoint (67.1 % accuracy)", "ddamfn:affectnet7"],
        ["ddamfn:rafdb: the DDAMFN authors' RAF-DB, 7 classes checkpoint (92.04 % accuracy (balanced 86.17 %))",
         "ddamfn:rafdb"]]

    client = Client(page, verbose=False)
    outputs = client.predict("Uploaded video", handle_file(str(media_dir / "single_face.mp4")), [], None, ["DDAMFN"],
                             "basic", "ddamfn:affectnet8", api_name="/analyse")
    run_info = outputs[0]
    assert ("| ddamfn | `ddamfn:affectnet8` | expr trained (AffectNet, 8 classes; upstream: 64.69 % accuracy); "
            "**untrained**: va, au (random heads, fixed seed) |") in run_info
