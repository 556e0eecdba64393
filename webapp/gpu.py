"""`gpu`: the ZeroGPU decorator on a Hugging Face Space, a plain call everywhere else.

`spaces.GPU` already returns the function unchanged off ZeroGPU (SPACES_ZERO_GPU unset), so the only
guard needed is for an install without the `spaces` package. On ZeroGPU `spaces` must be imported
before anything initialises CUDA, which is why webapp/app.py imports this module first.
"""
try:
    import spaces
except ImportError:  # not installed: nothing to request a GPU from
    spaces = None


def gpu(duration: int = 120):
    """Decorator for an event handler that does GPU work (seconds: ZeroGPU's time budget per call)."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)
