"""What every part of the app shares: the settings, the database, the Aff-Wild2 index, the loaded models
and the prompt sets. No Gradio here: the tabs' handlers (webapp/tabs) call the parts (webapp.analyses,
webapp.prompts, webapp.reviews, webapp.models), which hold one Context.
"""
from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from typing import Callable, TypeVar

from sqlalchemy.orm import Session

from core import pipeline
from core.affwild2_index import AffWild2Index
from core.analysis import RunInfo
from core.models import create_model
from core.models.clip import DEFAULT_PROMPT_SETS, PromptSet, prompt_set
from core.registry import card as model_card, cards
from core.weights import WeightsError
from db import repo
from db.engine import init_db, make_session_factory, write
from webapp.config import AppConfig
from webapp.inputs import InputError

LOADED_KEEP = 2       # model configurations kept in memory
T = TypeVar("T")


class Context:
    def __init__(self, config: AppConfig):
        self.config = config
        self._index: AffWild2Index | None = None
        self._factories = None
        self._loaded: OrderedDict[tuple, pipeline.LoadedModels] = OrderedDict()
        self._models: dict[tuple, object] = {}       # (architecture, weights, device, options) -> LoadedModel
        self._loading: dict[tuple, threading.Lock] = {}
        self._models_lock = threading.Lock()         # guards the three dicts above, held only briefly
        self._db_lock = threading.Lock()             # the database's first use (schema, engines)

    # -- database ---------------------------------------------------------------------------------------
    def _session_factories(self):
        """(writing, read-only) session factories; the schema is created or migrated on first use."""
        with self._db_lock:
            if self._factories is None:
                engine = init_db(self.config.db_url)
                self._factories = (make_session_factory(engine), make_session_factory(engine, read_only=True))
        return self._factories

    def write(self, work: Callable[[Session], T]) -> T:
        """work(session) as one write transaction, retried whole while the database is busy with other
        writers (db.engine.write); past the time limit DatabaseBusy says nothing was saved."""
        return write(self._session_factories()[0], work)

    def read(self):
        """A transaction that only reads: it never waits for, nor blocks, a writer."""
        return self._session_factories()[1].begin()

    # -- Aff-Wild2 --------------------------------------------------------------------------------------
    def affwild2_index(self) -> AffWild2Index | None:
        if self.config.affwild2_root is None:
            return None
        if self._index is None:
            self._index = AffWild2Index(self.config.affwild2_root)
        return self._index

    def affwild2_videos(self) -> list[str]:
        """Annotated Aff-Wild2 videos that have aligned face images in the configured root."""
        index = self.affwild2_index()
        return [v for v in index.all_videos() if index.image_dir(v) is not None] if index else []

    # -- models -----------------------------------------------------------------------------------------
    def model_weights(self) -> dict[str, str | None]:
        """The weights the app runs per model card (the environment's defaults; None: random)."""
        return {name: self.config.weights.get(name) for name in cards()}

    def loaded_models(self, config: pipeline.AnalysisConfig) -> pipeline.LoadedModels:
        """Models for a configuration (the few most recent configurations kept), each model built once per
        (architecture, weights, device) and shared between configurations (create_model below): a new prompt
        set or another set of ticks reloads nothing already loaded. CLIP embeds a new set's prompts when it
        first meets it. Loading holds only the lock of the model it builds: other loads, and every database
        read and write, go on meanwhile."""
        key = (config.model_names(), tuple(sorted(config.weights.items())), config.clip_model, config.device)
        with self._lock_for(key):
            with self._models_lock:
                if key in self._loaded:
                    self._loaded.move_to_end(key)
                    return self._loaded[key]
            try:
                loaded = pipeline.load_models(dataclasses.replace(config, prompt_sets=()), create=self.create_model)
            except WeightsError as err:
                raise InputError(f"The model weights could not be loaded: {err}") from None
            with self._models_lock:
                self._loaded[key] = loaded
                while len(self._loaded) > LOADED_KEEP:
                    self._loaded.popitem(last=False)
            return loaded

    def create_model(self, architecture: str, weights=None, device="auto", **options):
        """core.models.create_model, built once per (architecture, weights, device, options) and kept, under
        that model's own loading lock (two sessions wanting one model load it once)."""
        key = (architecture, weights, str(device), tuple(sorted(options.items())))
        with self._lock_for(key):
            with self._models_lock:
                if key in self._models:
                    return self._models[key]
            model = create_model(architecture, weights, device=device, **options)
            with self._models_lock:
                self._models[key] = model
            return model

    def analysis_model(self, run: RunInfo, card: str):
        """The model `card` of an analysis (its run metadata) on the CPU, for one look at a frame (the
        attention map): the very object the analysis ran when it ran on the CPU, else the same weights
        loaded once. None when the analysis had no such model."""
        if card not in run.models:
            return None
        source = run.models[card].source
        try:
            return self.create_model(model_card(card).architecture, None if source == "random" else source, "cpu")
        except WeightsError as err:
            raise InputError(f"The model weights could not be loaded: {err}") from None

    def _lock_for(self, key) -> threading.Lock:
        """The loading lock of one model key: two sessions wanting the same model load it once."""
        with self._models_lock:
            return self._loading.setdefault(key, threading.Lock())

    # -- CLIP prompt sets -------------------------------------------------------------------------------
    def prompt_set_names(self) -> list[str]:
        saved = [n for n in self._saved_prompt_sets() if n not in DEFAULT_PROMPT_SETS]
        return list(DEFAULT_PROMPT_SETS) + saved

    def prompt_set_object(self, name: str) -> PromptSet:
        if name in DEFAULT_PROMPT_SETS:
            return DEFAULT_PROMPT_SETS[name]
        saved = self._saved_prompt_sets()
        if name not in saved:
            raise InputError(f"No prompt set called {name!r}.")
        return saved[name]

    def _saved_prompt_sets(self) -> dict[str, PromptSet]:
        with self.read() as s:
            return {row.name: prompt_set(row.to_dict()) for row in repo.list_prompt_sets(s)}

