"""The page's state: the video open in a browser session (analysed on the Analyse tab or opened from the
database on the Review tab). Every tab reads it by field; nothing changes it in place (a new CLIP
embedding array makes a new OpenVideo). No Gradio here."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.analysis import Analysis, RunInfo
from core.table import FRAME
from webapp.inputs import InputError, whole


@dataclass(frozen=True, eq=False)    # eq=False: compared by identity, as Gradio compares a State's values
class OpenVideo:
    owner: str | None              # the login that opened it: only that login may use it
    key: str | None                # the video's database key (Aff-Wild2 id or upload content hash); None: not
                                   # stored (the data folder refused it), so it cannot be reviewed
    name: str                      # what people call it: the Aff-Wild2 id or the upload's file name
    path: str | None               # the video file for frames and the player (None: Aff-Wild2 aligned images)
    table: pd.DataFrame            # the analysis table with the effective labels as gt_ columns
    clip: np.ndarray | None        # raw CLIP image embeddings of the face frames, when computed
    run: RunInfo                   # how the analysis ran

    @classmethod
    def of(cls, analysis: Analysis, table: pd.DataFrame, key: str | None, name: str, path, owner: str | None):
        """The one way to make one: an analysis, its table with ground truth, where the video is, who opened it."""
        return cls(owner, key, name, str(path) if path else None, table, analysis.clip_embeddings, analysis.run)

    def with_clip(self, clip: np.ndarray) -> "OpenVideo":
        return dataclasses.replace(self, clip=clip)

    @property
    def last_frame(self) -> int:
        return int(self.table[FRAME].max())

    def frame(self, value, what: str = "frame") -> int:
        """A frame number of this video from the page (a whole number from 0 to the last frame)."""
        return whole(value, what, 0, self.last_frame)


def claim(state: OpenVideo | None, user: str | None) -> None:
    """Refuse to replace a session's video opened under another login (one who learnt the session id: it
    shows in download URLs). The owner lives in the state, which lasts as long as the session, not in its
    swept folder."""
    if state is not None and state.owner != user:
        raise InputError("This session was opened under another login: sign in as yourself and open your own "
                         "session.")


def need(state: OpenVideo | None, user: str | None) -> OpenVideo:
    """The video open in this browser session, or a message saying how to get one. A session's state
    belongs to the login that made it: a request from another login (one who learnt the session id) is
    refused."""
    if state is None:
        raise InputError("Analyse a video first (Analyse tab), or open one from the database (Review tab).")
    if state.owner != user:
        raise InputError("This session's video was opened under another login: analyse or open it yourself.")
    return state
