"""`gpu`: the ZeroGPU decorator on a Hugging Face Space, a plain call everywhere else; and how much GPU
time an analysis asks ZeroGPU for.

`spaces.GPU` already returns the function unchanged off ZeroGPU (SPACES_ZERO_GPU unset), so the only
guard needed is for an install without the `spaces` package. On ZeroGPU `spaces` must be imported
before anything initialises CUDA, which is why webapp/app.py imports this module first.

ZeroGPU queues a call by the GPU time it asks for (shorter first) and lets one call ask for at most
ZEROGPU_CALL_LIMIT_S, so an analysis asks for what its video needs, and longer videos are refused on
ZeroGPU before any model runs (webapp.config caps the accepted length there).
"""
import math

try:
    import spaces
except ImportError:  # not installed: nothing to request a GPU from
    spaces = None

ZEROGPU_CALL_LIMIT_S = 300    # the most GPU time one ZeroGPU call may ask for
ANALYSIS_SETUP_S = 30         # models onto the GPU, the first batches, the text embeddings of the prompts
# Assumed, not yet measured on a GPU (benchmarks/RESULTS.md): the pipeline keeps up with real time there.
GPU_S_PER_VIDEO_S = 1.0
ZEROGPU_MAX_VIDEO_S = (ZEROGPU_CALL_LIMIT_S - ANALYSIS_SETUP_S) / GPU_S_PER_VIDEO_S


def gpu(duration):
    """Decorator for an event handler that does GPU work. `duration`: ZeroGPU's time budget per call in
    seconds, or a function of the handler's own arguments that returns it."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def analysis_seconds(item, *_args, **_kwargs) -> int:
    """GPU time to ask for Analyses.analyse(item, ...), called by `spaces` with the same arguments: the
    set-up plus the video's length, within ZeroGPU's limit (an Aff-Wild2 video, aligned images with no
    file to measure, gets the limit)."""
    from core.video import probe

    if item.path is None:
        return ZEROGPU_CALL_LIMIT_S
    video_s = probe(item.path).duration_s
    return min(ZEROGPU_CALL_LIMIT_S, math.ceil(ANALYSIS_SETUP_S + GPU_S_PER_VIDEO_S * video_s))
