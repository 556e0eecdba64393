"""Which tier (or time-series column) of an outside file holds which label: a small mapping from the
user's names to AffectLens's label space (core.labels), given as a dict or a JSON file
{"name in the file": "target"}. Targets (case does not matter):

    "EXPR"            the tier's annotation values are expression names ("Happiness")
    an expression     every interval of the tier is that expression ("smile" -> "Happiness")
    an AU ("AU12")    the intervals are where that AU is on; elsewhere it is off
    "AU unannotated"  the intervals have no AU labels (the AU annotation's invalid frames)
    "valence", "arousal"   columns of the linked time-series CSV

DEFAULT maps the names AffectLens's own exports use, so an exported file comes back without a mapping.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.labels import AUS, EXPRESSIONS, VA_NAMES
from db.interop.tracks import refuse

EXPR_VALUES = "EXPR"
AU_UNANNOTATED = "AU unannotated"
TARGETS = {t.lower(): t for t in (EXPR_VALUES, *EXPRESSIONS, *AUS, AU_UNANNOTATED, *VA_NAMES)}
DEFAULT = {EXPR_VALUES: EXPR_VALUES, **{a: a for a in AUS}, AU_UNANNOTATED: AU_UNANNOTATED,
           **{v: v for v in VA_NAMES}}


def load_mapping(mapping: dict | str | Path | None) -> dict[str, str]:
    """The mapping checked, targets in their canonical spelling (None: DEFAULT); an unknown target is
    refused naming the mapping file and the entry."""
    if mapping is None:
        return dict(DEFAULT)
    source = "mapping"
    if not isinstance(mapping, dict):
        source = mapping
        try:
            mapping = json.loads(Path(mapping).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise refuse(source, f"not JSON ({err.msg})", err.lineno) from None
        if not isinstance(mapping, dict):
            raise refuse(source, 'expected one JSON object {"tier name": "target", ...}')
    out = {}
    for name, target in mapping.items():
        canonical = TARGETS.get(str(target).strip().lower())
        if canonical is None:
            raise refuse(source, f"{name!r} maps to unknown target {target!r}; targets are EXPR, "
                                 f"{', '.join(EXPRESSIONS)}, {', '.join(AUS)}, {AU_UNANNOTATED}, valence, arousal")
        out[str(name)] = canonical
    return out
