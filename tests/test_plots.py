"""The timeline's shading (webapp.plots): where the face box was interpolated, from the table's
box_detected column as the run recorded it, whatever the detection cadence."""
import pandas as pd
import pytest

from tests.test_webapp_units import predictions_table
from webapp.plots import FACELESS_COLOR, INTERPOLATED_COLOR, shaded_spans, timeline_figure


def cadence_table(every: int) -> pd.DataFrame:
    """Frames 40-49 without a face; MTCNN on every `every`-th frame elsewhere, except 50-69 where the
    detections disagreed and every frame was detected."""
    df = predictions_table()
    df["box_detected"] = pd.array(df["frame"] % every == 0, dtype="boolean")
    df.loc[50:69, "box_detected"] = True
    return df


@pytest.mark.parametrize("every", [2, 4, 8])
def test_interpolated_boxes_are_shaded_at_any_cadence(every):
    spans = shaded_spans(cadence_table(every))
    assert spans == [("no face", 40, 49), ("box interpolated", 1, 39),
                     ("box interpolated", 70 if 70 % every else 71, 89 if 89 % every else 88)]


def test_a_stretch_detected_on_every_frame_has_no_interpolated_shading():
    df = cadence_table(4)
    df["box_detected"] = pd.array([True] * len(df), dtype="boolean")
    assert shaded_spans(df) == [("no face", 40, 49)]


def test_the_timeline_draws_interpolated_boxes_behind_the_lines_and_faceless_frames_over_every_row():
    fig = timeline_figure(cadence_table(4))
    rects = [(s.fillcolor, s.layer, round(s.x0 * 30, 3), round(s.x1 * 30, 3)) for s in fig.layout.shapes
             if s.type == "rect" and s.yref == "paper"]
    assert rects == [(FACELESS_COLOR, "above", 39.5, 49.5), (INTERPOLATED_COLOR, "below", 0.5, 39.5),
                     (INTERPOLATED_COLOR, "below", 69.5, 89.5)]
    legend = {tr.name for tr in fig.data if tr.name and tr.name.endswith("(shaded)")}
    assert legend == {"no face (shaded)", "box interpolated (shaded)"}


def test_corrected_labels_are_outlined_only_where_the_figure_has_their_frames():
    """A segment's figure (frames 30-59) outlines the part of each correction inside it, and none outside."""
    part = predictions_table().iloc[30:60]
    corrected = {"expr": [(10, 20, 1), (25, 35, 2), (50, 70, 3)], "va": [(40, 44, 4)]}
    shapes = [s for s in timeline_figure(part, corrected=corrected).layout.shapes
              if (s.name or "").startswith("corrected")]
    spans = [(s.name, s.yref, round(s.x0 * 30, 3), round(s.x1 * 30, 3)) for s in shapes]
    assert spans == [("corrected expr 2", "y3", 29.5, 35.5), ("corrected expr 3", "y3", 49.5, 59.5),
                     ("corrected va 4", "y domain", 39.5, 44.5), ("corrected va 4", "y2 domain", 39.5, 44.5)]
