"""One way to name weights (issue 36.3): `python -m core.analyze` reads the page's variables
(AFFECTLENS_WEIGHTS_DDAMFN and its siblings), --weights wins over them, and the run says where each model's
weights came from."""
import json

from core.analyze import EXIT_ERROR, _config, parse_args
from core.analyze import main as analyze
from core.labels import TASKS
from core.models import DDAMFN
from core.weights import save_checkpoint


def run(media_dir, out, capsys, *extra) -> tuple[dict, list[str]]:
    code = analyze([str(media_dir / "single_face.mp4"), "--out", str(out), "--models", "ddamfn", "--device", "cpu",
                    "--max-frames", "3", *extra])
    err = capsys.readouterr().err
    assert code == 0, err
    return json.loads(out.with_suffix(".run.json").read_text())["models"]["ddamfn"], err.splitlines()


def test_the_command_line_reads_the_pages_variable(tmp_path, monkeypatch, media_dir, capsys):
    path = save_checkpoint(tmp_path / "ddamfn.pt", DDAMFN(tasks=TASKS))
    monkeypatch.setenv("AFFECTLENS_WEIGHTS_DDAMFN", str(path))
    ddamfn, err = run(media_dir, tmp_path / "preds.csv", capsys)
    assert ddamfn["source"] == str(path) and ddamfn["untrained"] is False
    assert f"note: DDAMFN: weights {path} (from AFFECTLENS_WEIGHTS_DDAMFN)" in err


def test_the_option_wins_over_the_variable(tmp_path, monkeypatch, media_dir, capsys):
    from_variable = save_checkpoint(tmp_path / "variable.pt", DDAMFN(tasks=TASKS))
    from_option = save_checkpoint(tmp_path / "option.pt", DDAMFN(tasks=TASKS))
    monkeypatch.setenv("AFFECTLENS_WEIGHTS_DDAMFN", str(from_variable))
    ddamfn, err = run(media_dir, tmp_path / "preds.csv", capsys, "--weights", f"ddamfn={from_option}")
    assert ddamfn["source"] == str(from_option)
    assert f"note: DDAMFN: weights {from_option} (from --weights)" in err


def test_without_either_the_run_says_the_model_is_random(tmp_path, monkeypatch, media_dir, capsys):
    monkeypatch.delenv("AFFECTLENS_WEIGHTS_DDAMFN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")                          # the default cannot be had
    ddamfn, err = run(media_dir, tmp_path / "preds.csv", capsys)
    assert ddamfn["source"] == "random" and ddamfn["untrained"] is True
    notes = [line for line in err if line.startswith("note: DDAMFN:")]
    assert len(notes) == 1 and notes[0].endswith("DDAMFN is random, untrained")


def test_a_models_alias_names_its_weights_and_an_unknown_name_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config, notes = _config(parse_args(["video.mp4", "--models", "lstm", "--weights", "ddamfn-lstm=lstm.pt"]))
    assert config.weights["lstm"] == "lstm.pt" and "ddamfn-lstm" not in config.weights
    assert "DDAMFN+LSTM: weights lstm.pt (from --weights)" in notes

    assert analyze(["video.mp4", "--weights", "resnet=r.pt"]) == EXIT_ERROR
    assert capsys.readouterr().err == "error: unknown model 'resnet'; choose from ddamfn, lstm, clip, clip-lstm\n"
