"""Frames per second and peak memory of the video pipeline, part by part, on the sample videos.

    python -m benchmarks.pipeline                     # CPU: every case on ../shared/media, then 10 s vs 10 min
    python -m benchmarks.pipeline --device cuda       # the same on the GPU
    python -m benchmarks.pipeline --videos single_face.mp4 --skip-clip --skip-long
    python -m benchmarks.pipeline --videos WolfgangLanger_Pexels.mp4 --runtimes torch,auto --overlap both --skip-long

Cases, each in a fresh process (so that its peak RSS is its own), after one untimed warm-up run on the
video's first frames (model loading and first-call kernel set-up are not timed):
    decode           core.video.iter_frames only (the ceiling)
    detect           decode + MTCNN as the pipeline runs it (every k-th frame, on a downscaled copy)
    detect-batched   the same with MTCNN's stages on batched roi_align crops (core.faces)
    detect-stock     decode + stock MTCNN on every full-size frame (batched)
    ddamfn-lstm      the whole pipeline: analyze_video with DDAMFN + LSTM (default: DDAMFN on every frame)
    ddamfn-lstm-2    the same with the stride a user may pick: DDAMFN on every 2nd frame (ddamfn_every=2)
    ddamfn-lstm-clip the whole pipeline with DDAMFN + LSTM + CLIP ViT-B-32 zero-shot (the page's default set),
                     every frame
    ddamfn-lstm-clip-strided  the same with DDAMFN every 2nd and CLIP every 4th frame (the old CPU strides)
    naive            a per-frame loop: read a frame, stock MTCNN on it, crop, DDAMFN on one crop; LSTM at end
The pipeline cases run once per --runtimes value (AFFECTLENS_RUNTIME: the encoders on eager torch or on
OpenVINO, core.runtime; its model is converted or read from the data folder's cache before the warm-up, so
conversion is never timed) and per --overlap value (AFFECTLENS_STAGE_OVERLAP: detection of the next batch
beside the encoders, or not); each row names the encoders' runtime as the run JSON does. The naive loop runs
eager torch, as a per-frame package does. At the end, the issue's Done-when figures from the rows of the
first video: DDAMFN+LSTM on every frame (frames/s and x the naive loop measured beside it) and the page's
default set (DDAMFN+LSTM and CLIP, every frame).
Also, each in a fresh process: start-up (`python -m core.analyze --help`; `import core.pipeline`; imports,
DDAMFN + LSTM + MTCNN loaded: what `python -m core.analyze` spends before the first frame; the first frame of
a first analysis with the page's default set: imports, models loaded, the first batch analysed) and the
refusal of bad input (core.video.probe on the 20 s clip, on a truncated copy and on a 10-minute video, as
the page calls it before any model work).
Memory against length: the whole pipeline on 10 s and on a 10-minute video (WolfgangLanger looped with
ffmpeg into a temporary file); on CPU the 10-minute run is capped at --long-max-frames frames (stated in
the output) while decode-only runs through all of it. Random weights throughout (speed does not depend on
them). Peak RSS is the process's maximum resident size (ru_maxrss); "base" is the RSS after set-up and
warm-up, so peak - base is what the timed run added. "cpu ms/f" is CPU time (all threads) per frame. "load" is the machine's 1-minute load average when
the case ended: other processes on a small machine slow every case down.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import platform
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
VIDEOS = ("WolfgangLanger_Pexels.mp4", "single_face.mp4", "no_face.mp4", "face_noface.mov", "noface_face.mov")
CASES = ("decode", "detect", "detect-batched", "detect-stock", "ddamfn-lstm", "ddamfn-lstm-2", "ddamfn-lstm-clip",
         "ddamfn-lstm-clip-strided", "naive")
STRIDES = {"ddamfn-lstm-2": {"ddamfn_every": 2}, "ddamfn-lstm-clip-strided": {"ddamfn_every": 2, "clip_every": 4}}
WARMUP_FRAMES = 48
PIPELINE_CASES = ("ddamfn-lstm", "ddamfn-lstm-2", "ddamfn-lstm-clip", "ddamfn-lstm-clip-strided")
TORCH_ONLY = {"AFFECTLENS_RUNTIME": "torch"}       # the other cases: no encoder, or eager torch by design (naive)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run_case(case: str, video: str, device: str, max_frames: int | None, settings_env: dict | None = None) -> dict:
    """One timed case in this (fresh) process; settings_env: AFFECTLENS_RUNTIME and AFFECTLENS_STAGE_OVERLAP."""
    os.environ.update(settings_env or {})
    import numpy as np
    import torch

    from core import faces as facelib
    from core import runtime
    from core.device import pick_device
    from core.pipeline import AnalysisConfig, analyze_video, detection_settings, load_models
    from core.video import iter_frames

    dev = pick_device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    models = {"ddamfn-lstm": ("ddamfn", "lstm"), "ddamfn-lstm-2": ("ddamfn", "lstm"),
              "ddamfn-lstm-clip": ("ddamfn", "lstm", "clip"), "ddamfn-lstm-clip-strided": ("ddamfn", "lstm", "clip"),
              "naive": ("ddamfn", "lstm")}.get(case, ("ddamfn",))
    config = AnalysisConfig(models=models, device=device, max_frames=max_frames)
    settings = detection_settings(config)
    every, size = settings["every"], settings["detect_size"]
    loaded = load_models(config) if case != "decode" else None
    for model in (loaded.models.values() if loaded else ()):      # OpenVINO ready before anything is timed
        runtime.wait(model.model)
    extra = {}

    def decode(limit):
        return sum(len(b) for b in iter_frames(video, max_frames=limit))

    detector = facelib.FaceDetector(dev, batch_size=64 if dev.type == "cuda" else 16)

    def detect(limit, stock=False, batched=False):
        det = detector
        det.min_face_px = facelib.MTCNN_MIN_FACE if stock else settings["min_face_px"]
        det.detect_size, det.batched_crops = (None if stock else size), batched
        batches = iter_frames(video, batch_size=config.batch_size, max_frames=limit)
        found = list(facelib.detect_stream(batches, det, 1 if stock else every))
        extra.update(detected=int(sum(b.detected.sum() for b in found)))
        return sum(len(b) for b in found)

    def pipeline(limit):
        result = analyze_video(video, AnalysisConfig(models=models, device=device, max_frames=limit,
                                                     **STRIDES.get(case, {})), loaded=loaded)
        extra.update(faces=int(result.table["face"].sum()), stages_s=result.run.timings,
                     detected=result.run.detection.detected_frames,
                     strides={k: v.every for k, v in result.run.strides.items()},
                     runtimes={k: result.run.models[k].runtime for k in result.run.strides})
        return len(result.table)

    @torch.no_grad()
    def naive(limit):
        import cv2

        ddamfn, lstm = loaded.models["ddamfn"], loaded.models["lstm"]
        mtcnn = detector.mtcnn
        cap = cv2.VideoCapture(video)
        embeddings, mask = [], []
        while limit is None or len(mask) < limit:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            boxes, probs = mtcnn.detect(rgb)
            if boxes is None:
                embeddings.append(np.zeros(512, np.float32))
                mask.append(False)
                continue
            crop = facelib.crop_face(rgb, boxes[0], 112)
            embeddings.append(ddamfn.model.embed(ddamfn.preprocess(crop[None]))[0].float().cpu().numpy())
            mask.append(True)
        cap.release()
        lstm.model.predict_video(np.stack(embeddings), np.array(mask))
        return len(mask)

    work = {"decode": decode, "detect": detect, "detect-batched": lambda n: detect(n, batched=True),
            "detect-stock": lambda n: detect(n, stock=True),
            "ddamfn-lstm": pipeline, "ddamfn-lstm-2": pipeline, "ddamfn-lstm-clip": pipeline,
            "ddamfn-lstm-clip-strided": pipeline, "naive": naive}[case]
    work(WARMUP_FRAMES)
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = _rss_mb()
    cpu = _cpu_seconds()
    start = time.perf_counter()
    frames = work(max_frames)
    sync()
    seconds = time.perf_counter() - start
    out = {"frames": frames, "seconds": seconds, "fps": frames / seconds, "base_rss_mb": base,
           "cpu_ms_per_frame": 1000 * (_cpu_seconds() - cpu) / max(frames, 1),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "detected": frames if case in ("detect-stock", "naive") else extra.pop("detected", None),
           "detect_every": 1 if case in ("detect-stock", "naive") else every,
           "detect_size": None if case in ("detect-stock", "naive") else size or f"min face {settings['min_face_px']}",
           **extra}
    if dev.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_case(case: str, video: Path, device: str, max_frames: int | None = None,
             settings_env: dict | None = None) -> dict:
    """_run_case in a fresh spawned process."""
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_run_case, case, str(video), device, max_frames, settings_env).result()


def video_fps(path: Path) -> float:
    from core.video import probe

    return probe(path).fps


def make_long_video(minutes: float, folder: Path) -> tuple[Path, Path]:
    """A 10 s and a `minutes`-long 640x360 H.264 video, looping WolfgangLanger_Pexels.mp4 (no re-encode)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("ffmpeg is needed for the 10 s / 10 min memory check (or use --skip-long)")
    source = MEDIA / "WolfgangLanger_Pexels.mp4"
    short, long = folder / "ten_seconds.mp4", folder / f"{minutes:g}_minutes.mp4"
    for out, seconds in ((short, 10), (long, 60 * minutes)):
        subprocess.run([ffmpeg, "-v", "error", "-y", "-stream_loop", "-1", "-i", str(source), "-t", str(seconds),
                        "-an", "-c", "copy", str(out)], check=True)
    return short, long


def print_row(video: str, case: str, r: dict, fps_video: float) -> None:
    cuda = f" {r['cuda_peak_mb']:8.0f}" if "cuda_peak_mb" in r else ""
    detect = ""
    if case != "decode":
        detect = (f"every {r['detect_every']}, {r['detect_size'] or 'full'} px; detected {r['detected']}, "
                  f"interpolated {r['frames'] - r['detected']}")
    if "strides" in r:
        detect += "; encoders every " + ", ".join(f"{k} {v}" for k, v in r["strides"].items())
    if "runtimes" in r:
        detect += "; on " + ", ".join(f"{k} {v}" for k, v in r["runtimes"].items())
    print(f"{video:26s} {case:38s} {r['frames']:6d} {r['seconds']:8.2f} {r['fps']:8.1f} "
          f"{r['fps'] / fps_video:6.2f}x {r['cpu_ms_per_frame']:7.1f} {r['base_rss_mb']:7.0f} {r['peak_rss_mb']:7.0f}"
          f"{cuda} {os.getloadavg()[0]:5.1f}  {detect}", flush=True)
    if "stages_s" in r:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages_s"].items() if k not in ("load_models", "total"))
        print(f"{'':45s} stages (s): {stages}", flush=True)


STARTUP = """
import time
from core.pipeline import AnalysisConfig, _face_detector, load_models
config = AnalysisConfig(models=("ddamfn", "lstm"), device={device!r})
loaded = load_models(config)
_face_detector(str(loaded.device))
"""


FIRST_FRAME = """
from core.pipeline import AnalysisConfig, video_steps
next(video_steps({video!r}, AnalysisConfig(models=("ddamfn", "lstm", "clip"), device={device!r})))
"""


def fresh_seconds(args: list[str], settings_env: dict | None = None) -> float:
    """Wall time of a fresh interpreter running `args` (after `python`) in the repository."""
    import sys

    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, cwd=Path(__file__).resolve().parents[1],
                   env={**os.environ, "HF_HUB_OFFLINE": "1", **(settings_env or {})}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def startup_report(device: str, video: Path, settings_env: dict) -> None:
    """Start-up in fresh interpreters, with the issue's bounds (--help < 0.3 s, import < 1.5 s, first frame
    of the page's first analysis < 5 s)."""
    figures = (("python -m core.analyze --help", ["-m", "core.analyze", "--help"], 0.3),
               ("import core.pipeline", ["-c", "import core.pipeline"], 1.5),
               ("imports, DDAMFN + LSTM + MTCNN loaded", ["-c", STARTUP.format(device=device)], None),
               (f"first frame of a first analysis, the page's default set ({settings_env})",
                ["-c", FIRST_FRAME.format(video=str(video), device=device)], 5.0))
    print("\nstart-up (fresh interpreter each):")
    for label, args, bound in figures:
        seconds = fresh_seconds(args, settings_env)
        print(f"  {label}: {seconds:.2f} s" + (f" (bound {bound:g} s)" if bound else "")
              + f", load {os.getloadavg()[0]:.1f}", flush=True)


def done_when(rates: dict, video: str, variants: list[str]) -> None:
    """The issue's Done-when figures (issue 31) from one video's rows, per runtime / overlap variant."""
    naive = rates.get((video, "naive"))
    print(f"\nDone when (issue 31), {video}, load {os.getloadavg()[0]:.1f}:")
    for variant in variants:
        lstm, page = rates.get((video, f"ddamfn-lstm{variant}")), rates.get((video, f"ddamfn-lstm-clip{variant}"))
        if lstm:
            ratio = f", {lstm / naive:.2f}x the per-frame loop ({naive:.1f} frames/s; needs >= 2.5x)" if naive else ""
            print(f"  DDAMFN+LSTM every frame{variant}: {lstm:.1f} frames/s (needs >= 70){ratio}")
        if page:
            print(f"  the page's default set (DDAMFN+LSTM and CLIP) every frame{variant}: {page:.1f} frames/s "
                  "(needs >= 24)")


def _probe_seconds(path: str) -> tuple[float, str]:
    from core.video import VideoError, probe

    start = time.perf_counter()
    try:
        info = probe(path)
        outcome = f"accepted: {info.frame_count} frames, {info.duration_s:.1f} s"
    except VideoError as err:
        outcome = "refused: " + str(err).split(": ", 1)[1]
    return time.perf_counter() - start, outcome


def probe_seconds(path: Path) -> tuple[float, str]:
    """core.video.probe in a fresh process (imports not counted): seconds and what it said."""
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_probe_seconds, str(path)).result()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--videos", default=",".join(VIDEOS), help="comma-separated names in ../shared/media")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated, from: " + ", ".join(CASES))
    p.add_argument("--max-frames", type=int, help="frames per video and case (default: all)")
    p.add_argument("--skip-clip", action="store_true", help="leave out the ddamfn-lstm-clip case")
    p.add_argument("--skip-long", action="store_true", help="leave out the 10 s / 10 min memory check")
    p.add_argument("--long-minutes", type=float, default=10.0)
    p.add_argument("--long-max-frames", type=int, default=None,
                   help="cap the pipeline on the long video (default: 1500 frames on CPU, all on GPU; 0: all)")
    p.add_argument("--runtimes", default="auto", help="AFFECTLENS_RUNTIME values the pipeline cases run with, "
                   "comma-separated (auto, torch, openvino)")
    p.add_argument("--overlap", choices=("0", "1", "both"), default="0",
                   help="AFFECTLENS_STAGE_OVERLAP for the pipeline cases (both: each case both ways)")
    args = p.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c and not (args.skip_clip and c.startswith("ddamfn-lstm-clip"))]
    variants = {f" [{r}{', overlap' if o == '1' else ''}]": {"AFFECTLENS_RUNTIME": r, "AFFECTLENS_STAGE_OVERLAP": o}
                for r in args.runtimes.split(",") for o in (("0", "1") if args.overlap == "both" else (args.overlap,))}

    import torch

    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else None
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
          + (f", {gpu}" if gpu else "") + f"; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()[0]:.1f}")
    cuda_col = " cuda MB" if gpu else ""
    header = (f"{'video':26s} {'case':38s} {'frames':>6s} {'seconds':>8s} {'fps':>8s} {'x real':>7s} "
              f"{'cpu ms/f':>8s} {'base MB':>7s} {'peak MB':>7s}{cuda_col} {'load':>5s}  detection")
    print(header)
    rates = {}
    for name in args.videos.split(","):
        path = MEDIA / name
        fps_video = video_fps(path)
        for case in cases:
            for variant, settings_env in (variants.items() if case in PIPELINE_CASES else (("", TORCH_ONLY),)):
                r = run_case(case, path, args.device, args.max_frames, settings_env)
                rates[name, case + variant] = r["fps"]
                print_row(name, case + variant, r, fps_video)
    for name in args.videos.split(","):
        naive = rates.get((name, "naive"))
        if naive:
            print(f"{name}: " + ", ".join(f"{case} {rate / naive:.2f}x naive" for (v, case), rate in rates.items()
                                          if v == name and case.startswith("ddamfn")))
    done_when(rates, args.videos.split(",")[0], list(variants))
    startup_report(args.device, MEDIA / args.videos.split(",")[0], next(iter(variants.values())))
    if args.skip_long:
        return
    cap = args.long_max_frames if args.long_max_frames is not None else (0 if gpu else 1500)
    cap = cap or None
    with tempfile.TemporaryDirectory() as tmp:
        short, long = make_long_video(args.long_minutes, Path(tmp))
        fps_video = video_fps(short)
        cut = Path(tmp) / "truncated.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(MEDIA / "WolfgangLanger_Pexels.mp4"), "-c", "copy",
                        "-movflags", "+faststart", str(Path(tmp) / "faststart.mp4")], check=True)
        cut.write_bytes((Path(tmp) / "faststart.mp4").read_bytes()[:1_000_000])
        print("\nbad input before the wait: core.video.probe (fresh process, imports not counted)")
        for label, path in (("20 s clip", MEDIA / "WolfgangLanger_Pexels.mp4"), ("20 s clip cut at 1 MB", cut),
                            (f"{args.long_minutes:g}-minute video", long)):
            seconds, outcome = probe_seconds(path)
            print(f"  {label:26s} {seconds:6.3f} s  {outcome}  (load {os.getloadavg()[0]:.1f})", flush=True)
        print(f"\nmemory against length (pipeline on the {args.long_minutes:g}-minute video "
              + (f"capped at its first {cap} frames; decode runs through all of it)" if cap else "in full)"))
        print(header)
        long_label = f"{args.long_minutes:g} min"
        for label, path, case, limit in (("10 s", short, "decode", None), (long_label, long, "decode", None),
                                         ("10 s", short, "ddamfn-lstm", None), (long_label, long, "ddamfn-lstm", cap)):
            print_row(label, case, run_case(case, path, args.device, limit, next(iter(variants.values()))), fps_video)


if __name__ == "__main__":
    main()
