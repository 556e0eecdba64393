"""Where an analysis spends its time: per-stage timings, and decoding in a background thread so that
it overlaps detection and inference (core.pipeline)."""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator


class Timer:
    """Seconds per stage, summed over the calls."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - since
        return now


def prefetch(batches: Iterator, timer: Timer, depth: int = 2) -> Iterator:
    """Iterate `batches` in a worker thread, `depth` items ahead (OpenCV decodes without the GIL), so
    decoding overlaps detection and inference. Exceptions reach the consumer; stopping early stops
    the worker. The worker's busy time is recorded as timer.seconds["decode"]."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            t = time.perf_counter()
            for item in batches:
                t = timer.add("decode", t)
                if not put(item):
                    return
                t = time.perf_counter()
            put(done)
        except BaseException as e:       # handed to the consumer, which raises it
            put(e)
        finally:
            close = getattr(batches, "close", None)
            if close:
                close()

    worker = threading.Thread(target=work, name="decode", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


def timed(batches: Iterable, timer: Timer, stage: str) -> Iterator:
    """Record how long the consumer waits for each item."""
    it = iter(batches)
    while True:
        t = time.perf_counter()
        try:
            item = next(it)
        except StopIteration:
            return
        timer.add(stage, t)
        yield item


class TimedDetector:
    """A face detector whose detect() time is recorded as the "detect" stage."""

    def __init__(self, detector, timer: Timer):
        self.detector, self.timer = detector, timer

    def detect(self, frames):
        t = time.perf_counter()
        out = self.detector.detect(frames)
        self.timer.add("detect", t)
        return out
