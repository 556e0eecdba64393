"""Comparing CLIP prompt sets on an analysed video (zero-shot, core.predict) and saving them. No Gradio here."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.labels import EXPRESSIONS
from core.models.clip import DEFAULT_PROMPT_SETS, PromptSet
from core.predict import encode, zero_shot
from core.table import FACE, FRAME, prompt_output, set_expr_output
from db import repo
from webapp.analyses import Analyses
from webapp.frames import Frames
from webapp.inputs import InputError
from webapp.state import OpenVideo

ENCODE_CHUNK = 64      # face frames decoded, cropped and encoded at a time


class Prompts:
    def __init__(self, analyses: Analyses, frames: Frames):
        self.analyses, self.frames, self.ctx = analyses, frames, analyses.ctx

    def compare_prompts(self, video: OpenVideo, sets: list[PromptSet],
                        progress=None) -> tuple[pd.DataFrame, np.ndarray]:
        """The open video's table with clip_<S>_ columns for each prompt set: zero-shot CLIP (core.predict)
        on the CLIP image embeddings of the subject's face frames. The analysis keeps them when it ran
        CLIP (video.clip); otherwise they are computed once from the face crops and returned for the
        caller to keep, so that the next comparison only encodes prompts."""
        loaded = self._clip()
        table = video.table
        face = table[FACE].to_numpy(dtype=bool)
        emb = video.clip if video.clip is not None else self._clip_embeddings(video, loaded, progress)
        for ps in sets:
            probs = np.full((len(table), len(EXPRESSIONS)), np.nan)
            probs[face] = zero_shot(loaded.clip.model, emb, ps)
            table = set_expr_output(table, prompt_output(ps.name), probs)
        return table, emb

    def clip_untrained(self) -> bool:
        """Whether the CLIP the comparison runs has random weights (then every figure says so)."""
        return self._clip().clip.info.untrained

    def _clip(self):
        return self.ctx.loaded_models(self.analyses.model_config(("clip",)))

    def _clip_embeddings(self, video: OpenVideo, loaded, progress) -> np.ndarray:
        """Raw CLIP embeddings of the face frames, cut and encoded as the pipeline does (core.faces crops,
        core.predict.encode), ENCODE_CHUNK frames at a time."""
        table = video.table
        face_frames = [int(f) for f in table.loc[table[FACE].astype(bool), FRAME]]
        chunks = []
        for start in range(0, len(face_frames), ENCODE_CHUNK):
            part = face_frames[start:start + ENCODE_CHUNK]
            chunks.append(encode(loaded.clip, self.frames.encoder_crops(video, part, loaded.clip_size), "clip"))
            if progress:
                progress(start + len(part), len(face_frames))
        return np.concatenate(chunks)

    @staticmethod
    def prompt_set_from_text(name: str, templates: list[str], classes: dict) -> PromptSet:
        """A prompt set from the page's fields, within the size limits (db.limits) before it runs or is saved."""
        try:
            name, templates, classes = repo.check_prompt_set(name, templates, classes)
            return PromptSet(name, tuple(templates), classes)
        except ValueError as err:
            raise InputError(f"Prompt set: {err}") from None

    def save_prompt_set(self, ps: PromptSet, user: str) -> int:
        """Store the set (a new version when the content changed); returns its version."""
        if ps.name in DEFAULT_PROMPT_SETS:
            raise InputError(f"{ps.name} is a built-in prompt set: save your edit under another name.")

        def work(s):
            repo.get_or_create_reviewer(s, user)
            return repo.save_prompt_set(s, ps.name, ps.templates, ps.classes, user).version
        return self.ctx.write(work)
