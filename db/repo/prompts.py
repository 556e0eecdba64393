"""Saved CLIP prompt sets, versioned by content."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.labels import EXPRESSIONS
from db.models import PromptSet, Reviewer
from db.repo.common import NotFoundError, ReviewRuleError, ValidationError, _integer, _text
from db.repo.videos import get_reviewer


def _prompt_content(name, templates, classes) -> tuple[str, list[str], dict[str, list[str]]]:
    """Checked like core.models.clip.PromptSet, so a stored set always loads there."""
    name = _text(name, "prompt set name", 100)
    if not name.replace("_", "").isalnum() or not name.isascii():
        raise ValidationError(f"prompt set name {name!r} must be letters, digits or _")
    if isinstance(templates, str) or not isinstance(templates, Iterable):
        raise ValidationError(f"prompt set {name}: templates must be a list of strings")
    templates = [_text(t, f"prompt set {name}: a template") for t in templates]
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise ValidationError(f"prompt set {name}: every template needs exactly one {{}}")
    if not isinstance(classes, Mapping) or set(classes) != set(EXPRESSIONS):
        raise ValidationError(f"prompt set {name}: needs phrasings for exactly {', '.join(EXPRESSIONS)}")
    out = {}
    for c in EXPRESSIONS:
        phrasings = [classes[c]] if isinstance(classes[c], str) else list(classes[c])
        if not phrasings:
            raise ValidationError(f"prompt set {name}: no phrasing for {c}")
        out[c] = [_text(p, f"prompt set {name}: a phrasing of {c}") for p in phrasings]
    return name, templates, out


def save_prompt_set(session: Session, name: str, templates: Sequence[str], classes: Mapping[str, Sequence[str]],
                    author: Reviewer | str) -> PromptSet:
    """Save a CLIP prompt set. Same name and content as a stored version: that version is returned;
    new content under a known name: a new version (older ones stay)."""
    name, templates, classes = _prompt_content(name, templates, classes)
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
        query = query.where(PromptSet.version == _integer(version, "version"))
    found = session.scalar(query.order_by(PromptSet.version.desc()).limit(1))
    if found is None:
        raise NotFoundError(f"unknown prompt set {name!r}" + (f" version {version}" if version is not None else ""))
    return found
