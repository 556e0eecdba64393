"""The models table and retraining: which checkpoints the app can analyse with, and retraining jobs
started from the page (training.jobs), read back from the database. No Gradio here."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from core import upstream
from core.labels import TASKS
from core.settings import db_url
from core.registry import card_for_checkpoint, card_for_training_kind
from db import repo
from webapp.context import Context
from webapp.inputs import InputError, whole
from webapp.results import rounded

MAX_EPOCHS = 1000          # bounded work: a retraining job started from the page
MAX_BATCH_SIZE = 4096
MAX_STEPS_PER_EPOCH = 1_000_000
MODEL_COLUMNS = ["id", "name", "runs as", "tasks", "trained", "validation", "corrections", "by", "created"]


class Models:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.config = ctx.config

    def registered_weights(self, model_id) -> tuple[str, str]:
        """(card it runs as, weights spec) of a model in the models table, or of the DDAMFN authors' checkpoint
        named as everywhere else (`ddamfn:affectnet8`, core.upstream)."""
        if isinstance(model_id, str) and model_id.startswith(upstream.PREFIX):
            if model_id not in upstream.classifiers():
                raise InputError(f"{model_id} is none of the DDAMFN authors' checkpoints an analysis can run "
                                 f"({', '.join(upstream.classifiers())}).")
            return "ddamfn", model_id
        with self.ctx.read() as s:
            try:
                model = repo.get_model(s, model_id)
            except (repo.ValidationError, ValueError, TypeError):
                raise InputError(f"There is no model {model_id} in the models table.") from None
            architecture, path, encoder = model.architecture, model.path, (model.training or {}).get("encoder")
        card = card_for_checkpoint(architecture, encoder)
        if card is None or not Path(path).is_file():
            raise InputError(f"Model {model_id} ({Path(path).name}) cannot be analysed with: "
                             + ("its file is gone." if card else f"a {architecture} checkpoint is no analysis model."))
        return card, path

    def model_list(self) -> pd.DataFrame:
        """The models table for the page: what each is, how far it was trained, its validation scores."""
        with self.ctx.read() as s:
            rows = [{"id": m.id, "name": m.name, "runs as": m.architecture, "tasks": ", ".join(m.tasks),
                     "trained": (f"{m.trained_steps} steps, {(m.training or {}).get('frames_seen', '?')} frames"
                                 if m.trained_steps is not None else "unknown"),
                     "validation": ", ".join(f"{k} {v:.3f}" for k, v in (m.metrics or {}).items()
                                             if k in ("p_va", "p_expr", "p_au", "score") and v is not None),
                     "corrections": len(m.correction_ids), "by": m.started_by.name if m.started_by else "",
                     "created": m.created_at.strftime("%Y-%m-%d %H:%M")} for m in repo.list_models(s)]
        return pd.DataFrame(rows, columns=MODEL_COLUMNS)

    def model_choices(self) -> list[tuple[str, int | str]]:
        """The page's weights choices: the app's default, the DDAMFN authors' checkpoints by the names the
        command line and the variables take, and the models table's models by id."""
        models = self.model_list()
        named = [(f"{spec}: the DDAMFN authors' {n.trained_on} checkpoint ({n.figure})", spec)
                 for spec, n in upstream.classifiers().items()]
        return [("the app's default weights", 0)] + named + [
            (f"{i}: {n} ({a}, {t})", int(i)) for i, n, a, t in zip(models["id"], models["name"], models["runs as"],
                                                                  models["trained"])]

    def current_weights(self, model_kind: str) -> str | None:
        """The weights the app runs for a training model kind (what a retrained model is compared with)."""
        return self.ctx.model_weights()[card_for_training_kind(model_kind)]

    def retrain(self, preset: str, epochs: int, steps_per_epoch: int, batch_size: int, user: str) -> int:
        """Start a preset's training on the uploaded videos with annotations and the Aff-Wild2 root (either
        or both) with the reviewers' effective labels (accepted corrections applied, flagged frames left out)
        as a job in its own process (training.jobs); the job evaluates the weights the app runs now first,
        for a before/after comparison. Returns its id."""
        from training import config as tconfig
        from training.jobs import COMPARE

        self._check_data("retrain")
        if preset not in tconfig.presets():
            raise InputError(f"Unknown training preset {preset!r}; choose one of {', '.join(tconfig.presets())}.")
        epochs = whole(epochs, "number of epochs", 1, MAX_EPOCHS)
        steps_per_epoch = whole(steps_per_epoch, "number of steps per epoch (0: all)", 0, MAX_STEPS_PER_EPOCH)
        batch_size = whole(batch_size, "batch size (0: the preset's)", 0, MAX_BATCH_SIZE)
        settings = dict(self._data_settings(), epochs=epochs, steps_per_epoch=steps_per_epoch, corrections=True)
        if batch_size:                                                   # 0: the preset's
            settings["batch_size"] = batch_size
        cfg = tconfig.build(tconfig.TrainConfig, preset)
        start = self.start_weights(cfg.model, getattr(cfg, "encoder", None))
        if start:
            settings["weights"] = start
        elif cfg.model == "ddamfn":            # the app's DDAMFN is random: so is the start, not the preset's
            settings["weights"] = tconfig.UNTRAINED
        if self.current_weights(cfg.model):
            settings[COMPARE] = self.current_weights(cfg.model)
        return self._submit(preset, settings, user)

    def audit(self, user: str) -> int:
        """Start the annotation audit (python -m training audit) of the same data as a job, in the same queue
        and limits as retraining: its folds train on the embeddings of the DDAMFN the app runs; its
        suggestions fill the Review tab's dataset queue when it ends. Returns its id."""
        from training.config import UNTRAINED
        from training.jobs import AUDIT

        self._check_data("audit")
        return self._submit(AUDIT, dict(self._data_settings(), encoder=self.ctx.model_weights()["ddamfn"] or UNTRAINED),
                            user)

    def _check_data(self, action: str) -> None:
        """Refuse, in words, when there is no Aff-Wild2 folder and no upload to train on."""
        from training.uploads import trainable_uploads

        if self.config.affwild2_root is None:
            with self.ctx.read() as s:
                uploads, left_out = trainable_uploads(s, self.config.data_dir, TASKS)
            if not uploads:
                raise InputError(f"Nothing to {action} on: upload videos with their annotation files and analyse "
                                 "them, or set AFFECTLENS_AFFWILD2_ROOT." + "".join(f" {why}." for why in left_out))

    def _data_settings(self) -> dict:
        """What a job reads and where it writes: the uploads and the Aff-Wild2 folder, the embeddings cache,
        the runs folder (each job in its own folder there)."""
        return dict(root=str(self.config.affwild2_root or ""), uploads=True, data=str(self.config.data_dir),
                    device=self.config.device, progress=False, workers=0,
                    cache=str(self.config.data_dir / "embeddings"), out=str(self.config.runs_dir))

    def _submit(self, preset: str, settings: dict, user: str) -> int:
        from training.jobs import submit

        try:
            return submit(self.config.db_url or db_url(), preset, settings, user, self.config.runs_dir / "logs")
        except ValueError as err:
            raise InputError(f"Job settings: {err}") from None

    def start_weights(self, model_kind: str, encoder: str | None) -> str | None:
        """What a training run starts from, by what it trains on: DDAMFN fine-tunes the DDAMFN the app runs;
        heads and LSTMs train on the embeddings of their encoder (DDAMFN, or the CLIP / adapter the app runs);
        an adapter trains on the CLIP the app runs."""
        weights = self.ctx.model_weights()
        if model_kind == "clip-adapter" or encoder in ("clip", "clip-adapter"):
            return weights["clip"]
        return weights["ddamfn"]

    def job_status(self, job_id) -> JobShown:
        """A job as the page shows it: status; while it runs its progress and time left; how the uploads were
        split; the error; when done, for retraining the model it registered, the epoch kept and why, and the
        validation metrics before (the app's weights) and after, with the reason where one side is missing;
        for the audit how many suggestions it made and how it folded. Jobs whose process has died are marked
        failed first, so that none stays "running" for ever, and queued jobs start when their turn has come
        (training.jobs.start_queued); a queued one says how many are ahead."""
        from training.jobs import AUDIT, COMPARE, run_folder, start_queued, waiting_line
        from training.loop import DATA_FILE

        start_queued(self.ctx.write, self.config.db_url or db_url(), self.config.runs_dir / "logs")
        with self.ctx.read() as s:
            try:
                job = repo.get_job(s, job_id)
            except (repo.ValidationError, ValueError, TypeError):
                raise InputError(f"There is no retraining job {job_id}.") from None
            p, model, status, audit = job.progress or {}, job.model, job.status, job.preset == AUDIT
            lines = [f"**Job {job.id}** ({job.preset}, started by {job.started_by.name if job.started_by else '?'}): "
                     f"**{status}**."]
            if p and status == "running":
                lines.append(f"Epoch {p.get('epoch', '?')}/{p.get('epochs', '?')}, step {p.get('step', '?')}/"
                             f"{p.get('steps', '?')}, loss {p.get('loss', float('nan')):.4f}, about "
                             f"{p.get('eta_s') or 0:.0f} s left.")
            if waiting := waiting_line(s, job):
                lines.append(waiting)
            data_file = run_folder(job.settings.get("out", ""), job.id) / DATA_FILE
            if data_file.is_file():
                lines.append(f"Validation split of the uploads: {json.loads(data_file.read_text())['split']}.")
            if job.error:
                lines.append(f"It failed: {job.error}")
            if model is not None:
                training = model.training or {}
                lines.append(f"New model **{model.id}: {model.name}**, trained {model.trained_steps} steps on "
                             f"{training.get('frames_seen', '?')} frames; it is picked on the Analyse tab "
                             "(Weights): analyse again to compare.")
                if kept := training.get("kept"):
                    lines.append(f"Kept epoch {kept['epoch']} of {training.get('epochs', '?')}: {kept['why']}.")
            before, after = job.before_metrics or {}, job.after_metrics or {}
            compared = bool(job.settings.get(COMPARE))
            model_id = model.id if model is not None else None
        ended = status in ("done", "failed")
        if audit:
            lines.append(_audit_words(status, after))
            before = {}
        else:
            lines += _missing_figures(before, after, compared, ended)
        names = [k for k, v in (after or before).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        table = pd.DataFrame({"metric": names, "before": [rounded(before.get(k)) for k in names],
                              "after": [rounded(after.get(k)) for k in names]}, columns=["metric", "before", "after"])
        return JobShown("\n\n".join(lines), table, model_id, ended, audit)


def _missing_figures(before: dict, after: dict, compared: bool, ended: bool) -> list[str]:
    """Why the before or after column of a retraining job is empty."""
    lines = []
    if not before:
        lines.append("No *before* figures: " + (
            "the app runs untrained (random) weights for this model, so there is nothing to compare with."
            if not compared else "the app's weights are evaluated when the job starts." if not ended
            else "the job ended before the app's weights were evaluated."))
    if not after:
        lines.append("No *after* figures: " + ("the job failed." if ended else "they come when training ends."))
    return lines


def _audit_words(status: str, after: dict) -> str:
    if status == "done":
        return (f"The audit made {after.get('suggestions', 0)} suggestions ({after.get('above_report', 0)} above the "
                f"report threshold); {after.get('folding', '')}. They are in the Review tab's dataset queue; the "
                "table gives the audit's out-of-fold figures (after).")
    if status == "failed":
        return "The dataset queue keeps the previous audit's suggestions."
    return "The annotation audit trains its folds one after another; this panel says when it ends."


@dataclass(frozen=True)
class JobShown:
    """What the job panel shows; `ended` (done or failed) stops the page following the job; `audit`: an
    audit job, whose end refreshes the dataset queue."""

    text: str
    metrics: pd.DataFrame
    model_id: int | None
    ended: bool
    audit: bool
