"""ELAN and Label Studio, both ways, from and into the review database.

Exports show a video's effective annotation, its newest analysis's model outputs (marked untrained
where they are), accepted corrections and open flags (db/interop/tracks.py); imports become annotation
sets of the video (repo.add_annotation_set), frame-exact by core.timebase. Modules: tracks (what is
shown), mapping (user tier names -> labels), elan (.eaf + VA CSV), labelstudio (tasks JSON + config).

The page's download is export_video(session, key, out_dir, data_dir=..., media=...) -> (files, notes).
Files are named after the video (tracks.file_stem), never its database key.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from core import settings
from db.interop.elan import read_eaf, write_eaf
from db.interop.labelstudio import read_label_studio, write_label_studio
from db.interop.mapping import DEFAULT as DEFAULT_MAPPING
from db.interop.mapping import load_mapping
from db.interop.tracks import InteropError, file_stem, media_name, video_tracks
from db.models import AnnotationSet, Video
from db.repo import add_annotation_set, get_video

FORMATS = ("eaf", "labelstudio")

__all__ = ["DEFAULT_MAPPING", "FORMATS", "InteropError", "export_video", "file_stem", "import_eaf",
           "import_label_studio", "load_mapping"]


def export_video(session: Session, video: Video | str, out_dir, formats=FORMATS, *, data_dir=None, media=None,
                 media_url: str | None = None, stem: str | None = None) -> tuple[dict[str, Path], list[str]]:
    """Write a video's files into out_dir; returns ({"eaf", "va_csv" (when there is VA), "labelstudio",
    "labelstudio_config"} -> path, notes for the user: e.g. that the stored analysis is missing, so the
    files hold no model outputs). data_dir: where its analysis and an upload's kept copy are (default:
    the configured data directory); media: the video file, if known elsewhere; media_url: where outside
    tools reach the videos, the file name appended (default: settings.media_url; unset: the bare file
    name, beside the files); stem: the files' name (default: the video's name, file_stem)."""
    tracks = video_tracks(session, video, data_dir, media)
    media_url = media_url if media_url is not None else settings.media_url()
    stem = stem or file_stem(tracks.name)
    out: dict[str, Path] = {}
    if "eaf" in formats:
        written = write_eaf(tracks, out_dir, stem, media_url)
        out["eaf"] = written[0]
        if len(written) > 1:
            out["va_csv"] = written[1]
    if "labelstudio" in formats:
        out["labelstudio"], out["labelstudio_config"] = write_label_studio(tracks, out_dir, stem, media_url)
        if not media_url and media_name(tracks) is not None:
            tracks.notes.append(f"the Label Studio task names the video by its file name {media_name(tracks)!r}: "
                                "set AFFECTLENS_MEDIA_URL (or --media-url) to the URL Label Studio serves it from")
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
