"""A stored analysis written by an older AffectLens (its run.json without the fields RunInfo needs) is refused
in words (StaleAnalysis), so the page analyses the video again instead of failing."""
import json

import pandas as pd
import pytest

from core.analysis import Analysis, StaleAnalysis


def test_an_older_run_record_is_refused_in_words(tmp_path):
    folder = tmp_path / "analyses" / "old"
    folder.mkdir(parents=True)
    pd.DataFrame({"frame": [0, 1]}).to_parquet(folder / "table.parquet")
    (folder / "run.json").write_text(json.dumps({"device": "cpu", "untrained": True, "frames": 2}))
    with pytest.raises(StaleAnalysis, match=r"^old: stored by an older AffectLens \('config' missing or changed in "
                                            r"its run record\)$"):
        Analysis.load(folder)
