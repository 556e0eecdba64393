"""`python -m training {extract,train,thresholds,evaluate,predict,audit} [--preset NAME] [--key value ...]`.

`python -m training job ID [--db URL]` runs a queued job of the database, training or the audit (training/jobs.py
starts it).

Each command's options are the fields of its dataclass in training/config.py; `--help` lists them.
Launch with `torchrun --nproc_per_node=N -m training train ...` for several GPUs (or CPU processes).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from core import settings
from training import config

COMMANDS = {
    "extract": (config.ExtractConfig, "per-frame embeddings of a dataset, cached on disk (resumable)"),
    "train": (config.TrainConfig, "train a model; validation with the ABAW metrics every epoch"),
    "thresholds": (config.EvalConfig, "optimise per-AU thresholds on validation predictions, store them in the checkpoint"),
    "evaluate": (config.EvalConfig, "ABAW metrics of a checkpoint on a split"),
    "predict": (config.PredictConfig, "write ABAW submission files"),
    "audit": (config.AuditConfig, "out-of-fold predictions of a split and the ranked suggestions of the annotation "
                                  "audit (resumable)"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, (cls, text) in COMMANDS.items():
        config.add_arguments(sub.add_parser(name, help=text, description=f"{text}. {cls.__doc__}"), cls)
    job = sub.add_parser("job", help="run a queued training or audit job: progress, model and status in the "
                                     "database")
    job.add_argument("job_id", type=int)
    job.add_argument("--db", help="database URL (default: AFFECTLENS_DB_URL, where a started job finds it, so that "
                                   "a password never shows in the process list)")
    return p


def run(command: str, cfg):
    if command == "extract":
        from training.extract import extract

        cache = extract(cfg)
        return {"cache": str(cache.dir)}
    if command == "train":
        from training.loop import train

        best = train(cfg)
        if not best.is_file():
            raise ValueError(f"no checkpoint was written ({best} does not exist)"
                             + ("; --epochs 0 trains nothing" if cfg.epochs == 0 else ""))
        return {"best": str(best), "model": _register(cfg, best)}
    if command == "audit":
        from training.audit import audit

        return audit(cfg)
    if command == "thresholds" and cfg.weights == config.UNTRAINED:
        raise ValueError("thresholds are stored in a checkpoint: give one with --weights")
    from training import evaluate

    result = getattr(evaluate, command)(cfg)
    return {"weights": cfg.weights, "files": result} if command == "predict" else result


def _register(cfg, best) -> int | None:
    """The checkpoint's id in the review database's models table (None without a review database), so
    that the app can pick it."""
    from db.engine import make_session_factory, write
    from training.data import review_engine
    from training.jobs import register_checkpoint

    engine = review_engine(cfg.db, "the checkpoint is not registered as a model")
    if engine is None:
        return None
    return write(make_session_factory(engine), lambda s: register_checkpoint(
        s, best, f"{cfg.model} {'+'.join(cfg.tasks)}: {best.parent}", None, cfg.epochs, None).id)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    if args.command == "job":
        from training.jobs import run as run_job

        return run_job(args.job_id, args.db or settings.db_url())
    cls, _ = COMMANDS[args.command]
    try:
        cfg = config.from_args(cls, args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from core.weights import WeightsError
    from training.distributed import teardown

    try:
        result = run(args.command, cfg)
    except (ValueError, WeightsError, FileNotFoundError) as e:     # bad input: one line, no traceback
        teardown()
        print(f"error: {e}", file=sys.stderr)
        return 1

    teardown()
    if int(os.environ.get("RANK", "0")) == 0:            # torchrun: the first process reports
        print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
