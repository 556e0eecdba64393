"""ELAN and Label Studio, both ways, from and into the review database.

Exports show a video's effective annotation, its newest analysis's model outputs (marked untrained
where they are), accepted corrections and open flags (db/interop/tracks.py); imports become annotation
sets of the video (repo.add_annotation_set), frame-exact by core.timebase. Modules: tracks (what is
shown), mapping (user tier names -> labels), elan (.eaf + VA CSV), labelstudio (tasks JSON + config).

The page's download is export_video(session, key, out_dir, data_dir=..., media=...) -> (files, notes).
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from db.interop.elan import file_stem, read_eaf, write_eaf
from db.interop.labelstudio import read_label_studio, write_label_studio
from db.interop.mapping import DEFAULT as DEFAULT_MAPPING
from db.interop.mapping import load_mapping
from db.interop.tracks import InteropError, video_tracks
from db.models import AnnotationSet, Video
from db.repo import add_annotation_set, get_video

FORMATS = ("eaf", "labelstudio")

__all__ = ["DEFAULT_MAPPING", "FORMATS", "InteropError", "export_video", "import_eaf", "import_label_studio",
           "load_mapping"]


def export_video(session: Session, video: Video | str, out_dir, formats=FORMATS, *, data_dir=None, media=None,
                 video_url: str | None = None) -> tuple[dict[str, Path], list[str]]:
    """Write a video's files into out_dir; returns ({"eaf", "va_csv" (when there is VA), "labelstudio",
    "labelstudio_config"} -> path, notes for the user: e.g. that the stored analysis is missing, so the
    files hold no model outputs). data_dir: where its analysis and an upload's kept copy are (default:
    the configured data directory); media: the video file, if known elsewhere; video_url: how Label
    Studio reaches the video (default: its file name)."""
    tracks = video_tracks(session, video, data_dir, media)
    out: dict[str, Path] = {}
    if "eaf" in formats:
        written = write_eaf(tracks, out_dir)
        out["eaf"] = written[0]
        if len(written) > 1:
            out["va_csv"] = written[1]
    if "labelstudio" in formats:
        out["labelstudio"], out["labelstudio_config"] = write_label_studio(tracks, out_dir, file_stem(tracks),
                                                                           video_url)
    return out, tracks.notes


def import_eaf(session: Session, video: Video | str, path, mapping=None, version: str | None = None
               ) -> tuple[list[AnnotationSet], list[str]]:
    """An .eaf (and its linked VA CSV) as annotation sets of the video, one per task it labels, and
    notes; mapping: a dict or JSON file (db/interop/mapping.py; default: AffectLens's own tier names)."""
    video = get_video(session, video)
    labels, key, notes = read_eaf(path, video.fps, video.frame_count, mapping, video.key)
    return [add_annotation_set(session, video, task, values, path, key, version)
            for task, values in labels.items()], notes


def import_label_studio(session: Session, video: Video | str, path, annotation_id=None,
                        version: str | None = None) -> list[AnnotationSet]:
    """A Label Studio JSON export (the video's task, one submitted annotation) as annotation sets."""
    video = get_video(session, video)
    labels, key = read_label_studio(path, video.frame_count, video.key, annotation_id)
    return [add_annotation_set(session, video, task, values, path, key, version) for task, values in labels.items()]
