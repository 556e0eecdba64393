"""core.timebase: frame starts, the nearest-start rule back from time, and exact round trips through
whole milliseconds at the frame rates videos have."""
import numpy as np
import pandas as pd
import pytest

from core import timebase
from core.table import TIME


def test_frame_starts_and_milliseconds():
    assert timebase.frame_start(0, 30.0) == 0.0
    assert timebase.frame_start(45, 30.0) == 1.5
    assert [timebase.frame_ms(i, 30.0) for i in range(4)] == [0, 33, 67, 100]
    assert [timebase.frame_ms(i, 29.97) for i in (1, 2, 1000)] == [33, 67, 33367]


def test_a_time_falls_to_the_frame_whose_start_is_nearest():
    fps = 25.0                                      # frames start every 40 ms
    assert [timebase.frame_at(t, fps) for t in (0.0, 0.019, 0.021, 0.04, 0.059, 0.061)] == [0, 0, 1, 1, 1, 2]
    assert timebase.frame_at(0.02, fps) == 0        # a tie goes to the earlier frame
    assert timebase.frame_at(-0.09, fps) == -2 and timebase.frame_at(10.0, fps) == 250


def test_an_interval_holds_the_frames_whose_centre_lies_in_it():
    fps = 10.0                                      # centres at 0.05, 0.15, 0.25, ...
    assert timebase.frames_in(0.0, 0.3, fps) == (0, 2)
    assert timebase.frames_in(0.05, 0.25, fps) == (0, 1)      # centre 0.25 is the end: left out
    assert timebase.frames_in(0.06, 0.26, fps) == (1, 2)
    assert timebase.frames_in(0.16, 0.24, fps) is None        # between two centres
    assert timebase.frames_in(0.1, 0.2, fps) == (1, 1)


@pytest.mark.parametrize("fps", [24.0, 25.0, 29.97, 30.0, 59.94, 60.0, 120.0, 240.0])
def test_frame_ranges_survive_milliseconds(fps):
    """What ELAN stores (whole milliseconds) gives back the same frames, for every frame of an hour."""
    frames = np.arange(0, int(3600 * fps))
    back = [timebase.frame_at(timebase.frame_ms(int(i), fps) / 1000, fps) for i in frames[::97]]
    assert back == frames[::97].tolist()
    for first, last in [(0, 0), (3, 17), (1000, 1000), (len(frames) - 5, len(frames) - 1)]:
        t0, t1 = timebase.frame_ms(first, fps) / 1000, timebase.frame_ms(last + 1, fps) / 1000
        assert timebase.frames_in(t0, t1, fps) == (first, last)


def test_the_frame_rate_is_the_tables():
    table = pd.DataFrame({TIME: np.arange(10) / 29.97})
    assert timebase.frame_rate(table) == pytest.approx(29.97)
