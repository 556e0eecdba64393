"""Saved CLIP prompt sets, versioned by content, and bounded in size (db/limits.py): every prompt is
encoded for each comparison, and a saved set is in every reviewer's list."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.labels import EXPRESSIONS
from db.models import PromptSet, Reviewer
from db.limits import MAX_PROMPT_LENGTH, MAX_PROMPTS, MAX_PROMPTS_PER_CLASS
from db.repo.common import NotFoundError, ReviewRuleError, ValidationError, _row_id, _text
from db.repo.videos import get_reviewer


def _strings(values, what: str, one: str) -> list[str]:
    """A list of at most MAX_PROMPTS_PER_CLASS texts (only one more is read) of at most MAX_PROMPT_LENGTH
    characters each; `what` names the list and `one` an item in messages."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValidationError(f"{what} must be a list of strings")
    values = list(islice(values, MAX_PROMPTS_PER_CLASS + 1))
    if len(values) > MAX_PROMPTS_PER_CLASS:
        raise ValidationError(f"{what}: more than {MAX_PROMPTS_PER_CLASS} (a prompt set has at most "
                              f"{MAX_PROMPTS_PER_CLASS} prompts per class and {MAX_PROMPTS} in all)")
    return [_text(v, one, MAX_PROMPT_LENGTH) for v in values]


def check_prompt_set(name, templates, classes) -> tuple[str, list[str], dict[str, list[str]]]:
    """(name, templates, {class: phrasings}) checked as saving checks them: like core.models.clip.PromptSet,
    so a stored set always loads there, and within the size limits of db/limits.py (each class gets
    templates x its phrasings prompts), so the page can refuse a set before a comparison runs it."""
    name = _text(name, "prompt set name", 100)
    if not name.replace("_", "").isalnum() or not name.isascii():
        raise ValidationError(f"prompt set name {name!r} must be letters, digits or _")
    templates = _strings(templates, f"prompt set {name}: templates", f"prompt set {name}: a template")
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise ValidationError(f"prompt set {name}: every template needs exactly one {{}}")
    if not isinstance(classes, Mapping) or set(classes) != set(EXPRESSIONS):
        raise ValidationError(f"prompt set {name}: needs phrasings for exactly {', '.join(EXPRESSIONS)}")
    out = {}
    for c in EXPRESSIONS:
        phrasings = [classes[c]] if isinstance(classes[c], str) else classes[c]
        out[c] = _strings(phrasings, f"prompt set {name}: phrasings of {c}", f"prompt set {name}: a phrasing of {c}")
        if not out[c]:
            raise ValidationError(f"prompt set {name}: no phrasing for {c}")
        if len(templates) * len(out[c]) > MAX_PROMPTS_PER_CLASS:
            raise ValidationError(f"prompt set {name}: {len(templates)} templates x {len(out[c])} phrasings of {c} "
                                  f"make {len(templates) * len(out[c])} prompts; at most {MAX_PROMPTS_PER_CLASS} "
                                  "per class")
    total = len(templates) * sum(len(p) for p in out.values())
    if total > MAX_PROMPTS:
        raise ValidationError(f"prompt set {name}: {total} prompts in all; at most {MAX_PROMPTS}")
    return name, templates, out


def save_prompt_set(session: Session, name: str, templates: Sequence[str], classes: Mapping[str, Sequence[str]],
                    author: Reviewer | str) -> PromptSet:
    """Save a CLIP prompt set (checked by check_prompt_set). Same name and content as a stored version:
    that version is returned; new content under a known name: a new version (older ones stay)."""
    name, templates, classes = check_prompt_set(name, templates, classes)
    author = get_reviewer(session, author)
    content_hash = hashlib.sha256(json.dumps([templates, [classes[c] for c in EXPRESSIONS]]).encode()).hexdigest()

    def find():
        return session.scalar(select(PromptSet).where(PromptSet.name == name, PromptSet.content_hash == content_hash))

    for _ in range(5):   # concurrent saves of new content under one name may race for a version number
        found = find()
        if found is not None:
            return found
        version = (session.scalar(select(func.max(PromptSet.version)).where(PromptSet.name == name)) or 0) + 1
        try:
            with session.begin_nested():
                row = PromptSet(name=name, version=version, templates=templates, classes=classes,
                                content_hash=content_hash, author_id=author.id)
                session.add(row)
                session.flush()
            session.refresh(row)
            return row
        except IntegrityError:
            continue
    raise ReviewRuleError(f"prompt set {name}: could not store a new version (too many concurrent saves)")


def list_prompt_sets(session: Session, all_versions: bool = False) -> list[PromptSet]:
    """Saved prompt sets by name: the newest version of each, or every version."""
    query = select(PromptSet)
    if not all_versions:
        newest = select(PromptSet.name, func.max(PromptSet.version).label("version")).group_by(PromptSet.name)
        newest = newest.subquery()
        query = query.join(newest, (PromptSet.name == newest.c.name) & (PromptSet.version == newest.c.version))
    return list(session.scalars(query.order_by(PromptSet.name, PromptSet.version)))


def get_prompt_set(session: Session, name: str, version: int | None = None) -> PromptSet:
    """A saved prompt set by name (newest version unless one is given)."""
    query = select(PromptSet).where(PromptSet.name == _text(name, "prompt set name"))
    if version is not None:
        query = query.where(PromptSet.version == _row_id(version, "version"))
    found = session.scalar(query.order_by(PromptSet.version.desc()).limit(1))
    if found is None:
        raise NotFoundError(f"unknown prompt set {name!r}" + (f" version {version}" if version is not None else ""))
    return found
