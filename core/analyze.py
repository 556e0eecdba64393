"""Command line: analyse a video into the per-frame predictions table.

    python -m core.analyze VIDEO [--out preds.csv] [--parquet] [--models ddamfn,lstm,clip]
                                 [--device auto|cpu|cuda] [--weights NAME=SPEC ...] [--abaw DIR]
    python -m core.analyze VIDEO_ID --affwild2 ROOT ...     (an Aff-Wild2 video from its aligned images)

Writes the table as CSV (and Parquet with --parquet), the run metadata beside it (<out>.run.json) and,
with --abaw, one ABAW prediction file per task (DIR/va.txt, expr.txt, au.txt) with the run metadata beside
them (DIR/run.json). Every face frame is encoded unless a stride is asked for (--ddamfn-every,
--clip-every). A progress bar is shown on a terminal. Failures end with one line on stderr and exit status 1; a video without any face gives
a table with face=False everywhere and a note saying so (exit status 0).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core.models.clip import DEFAULT_MODEL as CLIP_MODEL
from core.registry import cards

EXIT_ERROR = 1


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m core.analyze", description=__doc__.split("\n\n")[0])
    p.add_argument("video", help="video file (mp4, mov, webm, avi, ...), or an Aff-Wild2 video id with --affwild2")
    p.add_argument("--out", type=Path, help="CSV to write (default: <video name>_predictions.csv here)")
    p.add_argument("--parquet", action="store_true", help="also write the table as Parquet beside the CSV")
    p.add_argument("--models", default="ddamfn", help="comma-separated: " + ", ".join(
                   f"{c.name} ({c.label})" for c in cards().values()) + " (default: ddamfn; a model named in "
                   "--weights is added, and so are the encoders the chosen models read)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    p.add_argument("--weights", action="append", default=[], metavar="NAME=SPEC",
                   help="weights of a model: a local file, hf://owner/repo/file.pt, ddamfn:affectnet8 (the "
                   "DDAMFN authors' files, core.upstream), or for clip an open_clip tag (e.g. clip=openai); a "
                   "SPEC without NAME= is for ddamfn. Repeatable; wins over the page's variables (" + ", ".join(
                       c.weights_env for c in cards().values() if c.weights_env) + "), which are read too. "
                   "Without either, a model gets its default (DDAMFN ddamfn:affectnet8 and CLIP's openai tag "
                   "when they can be had) or is random and reported as untrained")
    p.add_argument("--prompt-sets", default="basic", help="comma-separated CLIP prompt sets (default: basic)")
    p.add_argument("--clip-model", default=CLIP_MODEL, help=f"open_clip architecture (default: {CLIP_MODEL})")
    p.add_argument("--abaw", type=Path, metavar="DIR", help="also write ABAW prediction files, one per task")
    p.add_argument("--affwild2", type=Path, metavar="ROOT",
                   help="VIDEO is an Aff-Wild2 video id: analyse ROOT/cropped_aligned/VIDEO, one row per "
                   "annotation line")
    p.add_argument("--track", type=int, help="face track to follow (default: the largest face; the run "
                   "metadata lists the tracks)")
    p.add_argument("--detect-every", type=int, help="run face detection on every k-th frame (default: "
                   "core.faces.DEFAULT_DETECT_EVERY); boxes in between are interpolated, or detected where the "
                   "detections on either side disagree")
    p.add_argument("--min-face", type=float, metavar="PX", help="smallest face to find, in pixels of the "
                   "frame (default: core.faces.DEFAULT_MIN_FACE_PX, 40): detection runs on a copy scaled so that "
                   "such a face is MTCNN's smallest (20 px); smaller values cost more detection time")
    p.add_argument("--detect-size", type=int, help="instead of --min-face, detect on a copy whose longest side "
                   "is this many pixels")
    p.add_argument("--batched-detection", action="store_true",
                   help="MTCNN stages with batched crops (meant for GPUs)")
    p.add_argument("--ddamfn-every", type=int, default=1, metavar="K", help="run DDAMFN on every k-th frame "
                   "only, interpolating the embeddings between (default 1: every frame; table column "
                   "ddamfn_scored; what a stride costs: benchmarks/RESULTS.md)")
    p.add_argument("--clip-every", type=int, default=1, metavar="K", help="run CLIP on every k-th frame only, "
                   "interpolating the embeddings between (default 1: every frame; table column clip_scored)")
    p.add_argument("--fill", choices=("interpolate", "none"), default="interpolate",
                   help="predictions of frames without a face: interpolated (filled=True) or empty")
    p.add_argument("--max-frames", type=int, help="analyse only the first frames")
    return p.parse_args(argv)


def _weights(items: list[str]) -> dict[str, str]:
    """--weights NAME=SPEC items by card name (an alias such as ddamfn-lstm names its card; an unknown name is
    a ValueError naming the known ones); a SPEC alone is DDAMFN's."""
    from core.registry import card

    out = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep:
            name, spec = "ddamfn", item
        out[card(name.strip()).name] = spec.strip()
    return out


def _config(args):
    """The analysis settings, each model's weights from --weights, else from the page's settings
    (core.registry.configured_weights), and a line per model saying where they came from."""
    from core.pipeline import AnalysisConfig
    from core.registry import configured_weights

    models, weights = tuple(m.strip() for m in args.models.split(",") if m.strip()), _weights(args.weights)
    config = AnalysisConfig(
        models=models, weights=weights,
        prompt_sets=tuple(s.strip() for s in args.prompt_sets.split(",") if s.strip()),
        device=args.device, detect_every=args.detect_every, min_face_px=args.min_face, detect_size=args.detect_size,
        track=args.track,
        batched_detection=args.batched_detection, ddamfn_every=args.ddamfn_every, clip_every=args.clip_every,
        fill=args.fill, max_frames=args.max_frames, clip_model=args.clip_model)
    chosen, notes = configured_weights(config.model_names(), os.environ, config.clip_model, weights)
    weights.update({name: spec for name, spec in chosen.items() if spec})   # the frozen config's own dict,
    return config, notes                                                     # filled before any model loads


def _with_progress_bar(steps):
    """The Analysis at the end of core.pipeline's steps, shown as a tqdm bar on a terminal (nothing
    otherwise)."""
    from tqdm import tqdm

    from core.pipeline import Step, run_to_end

    with tqdm(total=0, unit="frame", disable=None, file=sys.stderr, dynamic_ncols=True) as bar:
        def shown():
            for step in steps:
                if isinstance(step, Step):
                    bar.total = step.total
                    bar.update(step.done - bar.n)
                yield step
        return run_to_end(shown())


def run(args) -> int:
    from core.pipeline import affwild2_steps, load_models, video_steps
    from core.table import write_submissions
    from core.video import probe

    config, notes = _config(args)
    if not args.affwild2:
        probe(args.video)          # a truncated or unreadable file is refused before the models load
    loaded = load_models(config)
    for note in notes:             # where the weights came from, once they loaded (a failure is one line)
        print(f"note: {note}", file=sys.stderr)
    if args.affwild2:
        result = _with_progress_bar(affwild2_steps(args.affwild2, args.video, config, loaded=loaded))
        name = args.video
    else:
        result = _with_progress_bar(video_steps(args.video, config, loaded=loaded))
        name = Path(args.video).stem
    out = args.out or Path(f"{name}_predictions.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    table = result.export_table()
    table.to_csv(out, index=False)
    written = [out]
    if args.parquet:
        written.append(out.with_suffix(".parquet"))
        table.to_parquet(written[-1], index=False)
    meta = out.with_suffix(".run.json")
    meta.write_text(result.run_json())
    written.append(meta)
    run = result.run
    abaw = write_submissions({name: result.table}, args.abaw) if args.abaw else []
    if abaw:                   # the submission files cannot say how they were made: the run JSON beside them
        abaw.append(args.abaw / "run.json")
        abaw[-1].write_text(meta.read_text())
    written += abaw
    untrained = [n for n, m in run.models.items() if m.untrained]
    print(f"{len(table)} frames, {run.face_frames} with a face, {run.timings['total']:.1f} s "
          f"({run.frames_per_s} frames/s) on {run.device}"
          + (f"; untrained (random) models: {', '.join(untrained)}" if untrained else ""), file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    if args.abaw and not abaw:
        print(f"note: no ABAW file written to {args.abaw}: there are no predictions", file=sys.stderr)
    for note in run.notes:
        print(f"note: {note}", file=sys.stderr)
    if run.strided:
        print(f"note: {run.embedding_note}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    # FFmpeg and OpenCV print decoder complaints of their own; the error below says what went wrong.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    from core.affwild2 import AnnotationError
    from core.video import VideoError
    from core.weights import WeightsError

    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (VideoError, WeightsError, AnnotationError, ValueError, KeyError, OSError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:        # never a traceback on the command line; the type says where to look
        print(f"error: unexpected {e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
