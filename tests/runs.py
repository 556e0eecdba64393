"""A RunInfo for tests that need one without running the pipeline: the models given as card name ->
untrained, their outputs as output -> card name."""
from core.analysis import AnalysisConfig, ModelRun, RunInfo, Source
from core.labels import TASKS


def run_info(outputs_from: dict[str, str], untrained: dict[str, bool], frames: int = 0,
             au_thresholds=(0.5,) * 12) -> RunInfo:
    models = {card: ModelRun("random" if random else f"{card}.pt", random, TASKS if card in ("ddamfn", "lstm")
                             else ("expr",), (TASKS if card in ("ddamfn", "lstm") else ("expr",)) if random else ())
              for card, random in untrained.items()}
    return RunInfo(config=AnalysisConfig(models=tuple(untrained)), device="cpu", models=models,
                   outputs_from=outputs_from, au_thresholds=tuple(au_thresholds), windows={},
                   expr_outputs=tuple(o for o in outputs_from if o not in TASKS), frames=frames,
                   face_frames=frames, faceless="interpolated", timings={"total": 1.0}, source=Source("video"),
                   fps=30.0, fps_source="video")
