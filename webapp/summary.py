"""The run summary in words for the page, and the run metadata as people may see it: files named by
their base names, never by where they lie on the server. No Gradio here."""
from __future__ import annotations

import re
from pathlib import Path

from webapp import results


# An absolute server path inside a text (/home/x/y.mp4, C:\\data\\y): only its last part is shown.
_PATH = re.compile(r"(?<![\w/.:-])(?:[A-Za-z]:\\|/)(?:[^\s'\"(),:;]+[/\\])+([^\s'\"(),:;/\\]*)")


def readable(text: str) -> str:
    """A text for people: no server paths (a file is named by its name)."""
    return _PATH.sub(lambda m: m.group(1) or Path(m.group(0).rstrip("/\\")).name, str(text)).strip()


def public(value):
    """Run metadata (or any JSON-like value) with every server path in its texts cut to the base name."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items()}
    if isinstance(value, list):
        return [public(v) for v in value]
    return readable(value) if isinstance(value, str) else value


def run_summary(run: dict, name: str, notes: list[str]) -> str:
    """Which weights ran, on what, how fast; `untrained` in plain words when weights are random."""
    lines = [f"**{name}**: {run.get('frames', '?')} frames, {run.get('face_frames', '?')} with a "
             f"face; ran on `{run.get('device', '?')}` in {run.get('timings_s', {}).get('total', 0):.1f} s "
             f"({run.get('frames_per_s') or 0:.1f} frames/s).", "",
             *results.weights_table(public(run.get("models", {})))]
    if run.get("untrained"):
        lines += ["", "Outputs from **untrained** models come from random weights: they show how the app "
                      "works, not what the face expresses."]
    if run.get("faceless_predictions") and run.get("face_frames", 0) < run.get("frames", 0):
        lines += ["", f"Frames without a face (shaded grey): {run['faceless_predictions']}."]
    if run.get("embedding_note"):
        lines += ["", f"Face frames: {run['embedding_note']}."]
    lines += [f"\n{note}" for note in notes]
    return "\n".join(lines)
