"""Named weights: the table of the DDAMFN authors' published files, asked for as `ddamfn:<name>`.

The files are the authors' work (github.com/SainingZhang/DDAMFN, branch main); we only fetch them.
core.weights downloads each once from GitHub's raw-file address (AFFECTLENS_UPSTREAM_URL replaces its
base), checks its git blob id (so that a changed or truncated file is refused, whatever its size) and keeps
it in the Hugging Face cache folder (HF_HUB_CACHE) under `github--SainingZhang--DDAMFN/<blob id>/<file name>`: where
a user copies the file by hand on a machine without network. HF_HUB_OFFLINE is honoured as for Hub files.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from core import settings
from core.labels import AFFECTNET7, AFFECTNET8

PREFIX = "ddamfn:"
CACHE_FOLDER = "github--SainingZhang--DDAMFN"
CHECKPOINTS = "DDAMFN++/checkpoints_ver2.0/"


@dataclass(frozen=True)
class Named:
    name: str
    path: str                           # in the upstream repository
    blob: str                           # git blob id: sha1(b"blob <size>\0" + content)
    trained_on: str
    figure: str                         # upstream's own result for the file
    classes: tuple[str, ...] | None     # the classifier's class order; None: a backbone without one


NAMED = {n.name: n for n in (
    Named("affectnet8", CHECKPOINTS + "affecnet8_epoch25_acc0.6469.pth", "b8dce63bfc249c270cd09f5adc34cf7948954b1f",
          "AffectNet, 8 classes", "64.69 % accuracy", AFFECTNET8),
    Named("affectnet7", CHECKPOINTS + "affecnet7_epoch19_acc0.671.pth", "a2399a1346f184f12725b37b3969bcc41529cdec",
          "AffectNet, 7 classes", "67.1 % accuracy", AFFECTNET7),
    Named("rafdb", CHECKPOINTS + "rafdb_epoch20_acc0.9204_bacc0.8617.pth", "3adfea01f296a4ef56ccd98578ab45a43e73f2eb",
          "RAF-DB, 7 classes", "92.04 % accuracy (balanced 86.17 %)", AFFECTNET7),
    Named("msceleb", "pretrained/MFN_msceleb.pth", "f3562570a235b7798d4ae02c51ffc12fa1e57880",
          "MS-Celeb-1M faces", "the MixedFeatureNet backbone upstream's training starts from", None),
)}


def classifiers() -> dict[str, Named]:
    """spec -> entry of the named files that hold a trained expression classifier (not the bare backbone):
    the ones an analysis can choose."""
    return {PREFIX + n.name: n for n in NAMED.values() if n.classes is not None}


def lookup(spec: str) -> Named | None:
    """The entry a `ddamfn:<name>` spec names; None for an unknown name (the caller lists NAMED)."""
    return NAMED.get(spec[len(PREFIX):])


def url(named: Named) -> str:
    return f"{settings.upstream_url()}/{named.path}"


def cache_path(named: Named) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / CACHE_FOLDER / named.blob / Path(named.path).name


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
