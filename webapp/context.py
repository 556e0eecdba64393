"""What every part of the app shares: the settings, the database, the Aff-Wild2 index, the loaded models
and the prompt sets. No Gradio here: the tabs' handlers (webapp/tabs) call the parts (webapp.analyses,
webapp.prompts, webapp.reviews, webapp.models), which hold one Context.
"""
from __future__ import annotations

import dataclasses
import threading
import weakref
from collections import OrderedDict
from typing import Callable, TypeVar

from sqlalchemy import select
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
from db.models import PredictionRun
from webapp.config import AppConfig
from webapp.inputs import InputError

LOADED_KEEP = 2       # model configurations kept in memory (their models count in the byte budget)
T = TypeVar("T")


def model_bytes(model) -> int:
    """The memory a loaded model's weights and buffers take."""
    tensors = [*model.model.parameters(), *model.model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class Context:
    def __init__(self, config: AppConfig):
        self.config = config
        self._index: AffWild2Index | None = None
        self._factories = None
        self._loaded: OrderedDict[tuple, pipeline.LoadedModels] = OrderedDict()
        # (architecture, weights, device, options) -> LoadedModel: those kept, least recently used first,
        # within config.model_cache_mb; and every one still loaded, kept or held by an analysis using it
        self._models: OrderedDict[tuple, object] = OrderedDict()
        self._alive: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._loading: dict[tuple, threading.Lock] = {}
        self._models_lock = threading.Lock()         # guards the dicts above, held only briefly
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

    def run_folders(self) -> set[str]:
        """The folders of the stored analyses (relative to the data directory)."""
        with self.read() as s:
            return set(s.scalars(select(PredictionRun.artifacts_dir).where(PredictionRun.artifacts_dir.is_not(None))))

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
        """Models for a configuration (the few most recent configurations kept while their models are), each
        model built once per (architecture, weights, device) and shared between configurations (create_model
        below): a new prompt set or another set of ticks reloads nothing already loaded. CLIP embeds a new
        set's prompts when it first meets it. Loading holds only the lock of the model it builds: other loads,
        and every database read and write, go on meanwhile."""
        key = (config.model_names(), tuple(sorted(config.weights.items())), config.clip_model, config.device)
        with self._lock_for(key):
            with self._models_lock:
                if key in self._loaded:
                    self._loaded.move_to_end(key)
                    used = {id(m) for m in self._loaded[key].models.values()}
                    for model_key in [k for k, m in self._models.items() if id(m) in used]:
                        self._models.move_to_end(model_key)
                    return self._loaded[key]
            try:
                loaded = pipeline.load_models(dataclasses.replace(config, prompt_sets=()), create=self.create_model)
            except WeightsError as err:
                raise InputError(f"The model weights could not be loaded: {err}") from None
            with self._models_lock:
                if {id(m) for m in loaded.models.values()} <= {id(m) for m in self._models.values()}:
                    self._loaded[key] = loaded          # kept only while all its models are
                while len(self._loaded) > LOADED_KEEP:
                    self._loaded.popitem(last=False)
            return loaded

    def create_model(self, architecture: str, weights=None, device="auto", **options):
        """core.models.create_model, built once per (architecture, weights, device, options) under that
        model's own loading lock (two sessions wanting one model load it once), and kept while the models
        kept fit in config.model_cache_mb: the least recently used go first. A model an analysis still
        holds stays loaded and is handed to whoever asks for it again (never loaded twice); it is freed
        when the last analysis using it lets go, unless the cache has room for it."""
        key = (architecture, weights, str(device), tuple(sorted(options.items())))
        with self._lock_for(key):
            with self._models_lock:
                model = self._alive.get(key)
            if model is None:
                model = create_model(architecture, weights, device=device, **options)
            with self._models_lock:
                self._keep(key, model)
            return model

    def _keep(self, key, model) -> None:
        """Keep a model as the most recently used; let go of the least recently used ones (and of the
        configurations holding them) until the kept models fit in the budget. Under _models_lock."""
        self._models[key] = self._alive[key] = model
        self._models.move_to_end(key)
        budget = self.config.model_cache_mb * 2**20
        while self._models and sum(map(model_bytes, self._models.values())) > budget:
            _, dropped = self._models.popitem(last=False)
            for name, loaded in list(self._loaded.items()):
                if any(m is dropped for m in loaded.models.values()):
                    del self._loaded[name]

    def kept_model_bytes(self) -> int:
        """The memory of the models kept for later analyses (at most config.model_cache_mb)."""
        with self._models_lock:
            return sum(map(model_bytes, self._models.values()))

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

