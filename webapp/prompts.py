"""Comparing CLIP prompt sets on an analysed video (zero-shot, core.predict) and saving them. No Gradio here."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from core.labels import EXPRESSIONS
from core.models.clip import DEFAULT_PROMPT_SETS, PromptSet
from core.predict import encode, zero_shot
from core.registry import label
from core.table import FACE, FRAME, prompt_output, set_expr_output
from db import repo
from webapp.analyses import Analyses
from webapp.context import Context
from webapp.inputs import InputError


class Prompts:
    def __init__(self, ctx: Context, analyses: Analyses):
        self.ctx, self.analyses = ctx, analyses

    def compare_prompts(self, state: dict, sets: list[PromptSet], progress=None) -> tuple[pd.DataFrame, np.ndarray]:
        """The analysed video's table with clip_<S>_ columns for each prompt set: zero-shot CLIP
        (core.predict) on the CLIP image embeddings of the subject's face frames. The analysis keeps them
        when it ran CLIP (state["clip"]); otherwise they are computed once from the face crops and
        returned for the caller to keep, so that the next comparison only encodes prompts."""
        config = self.analyses.analysis_config([label("clip")], None)
        loaded = self.ctx.loaded_models(config)
        table = state["table"]
        face = table[FACE].to_numpy(dtype=bool)
        emb = state.get("clip")
        if emb is None:
            emb = self._clip_embeddings(state, loaded, progress)
        for ps in sets:
            probs = np.full((len(table), len(EXPRESSIONS)), np.nan)
            probs[face] = zero_shot(loaded.clip.model, emb, ps)
            table = set_expr_output(table, prompt_output(ps.name), probs)
        return table, emb

    def clip_untrained(self) -> bool:
        """Whether the CLIP the comparison runs has random weights (then every figure says so)."""
        return self.ctx.loaded_models(self.analyses.analysis_config([label("clip")], None)).clip.info.untrained

    def _clip_embeddings(self, state, loaded, progress) -> np.ndarray:
        """Raw CLIP embeddings of the face frames' crops, 64 frames at a time (core.predict.encode)."""
        table = state["table"]
        face_frames = table.loc[table[FACE].astype(bool), FRAME].to_numpy()
        size = loaded.clip_size
        chunks = []
        for start in range(0, len(face_frames), 64):
            part = [int(f) for f in face_frames[start:start + 64]]
            crops = self.analyses.face_crops(state, part)
            images = np.stack([cv2.resize(crops[f], (size, size), interpolation=cv2.INTER_AREA) for f in part])
            chunks.append(encode(loaded.clip, images, "clip"))
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

