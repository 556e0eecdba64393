"""Database maintenance and review from the command line (the URL comes from --url or the usual configuration):

    python -m db upgrade                 create or migrate the database to the newest schema
    python -m db current                 print the URL (password hidden) and the schema revision
    python -m db videos                  list videos: runs, open flags, corrections waiting, last activity
    python -m db flags KEY [--open]      list a video's flags and how each was resolved
    python -m db resolve-flag ID --video KEY --reviewer NAME --resolution "annotation is right"
                                         [--correction N] [--note TEXT]   resolve a flag (see --help)
    python -m db report [--video KEY] [--predictions table.parquet|csv]
                                         agreement figures (JSON): reviewers, and the model against the annotation
    python -m db export OUT_DIR [--format review|eaf|labelstudio] [--video KEY] [--media-url URL]
                                         flags and corrections as CSV and JSON (with audit trail); or per
                                         video an ELAN .eaf (+ VA CSV), or Label Studio tasks + config
    python -m db import KEY FILE [--mapping MAP.json] [--annotation ID] [--version TEXT]
                                         an ELAN .eaf or a Label Studio JSON export as annotation sets
    python -m db audit list [--task T] [--kind K] [--status S] [--run N]
                                         the annotation audit's suggestions, best first, and the progress
    python -m db audit export OUT_DIR    the same as suggestions.csv and suggestions.json, and progress.json
    python -m db revision -m "message"   (developers) a new migration from the changed models

Refused input (an unknown video, a rule of the review process) is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from db.engine import alembic_config, current_revision, init_db, make_engine, make_session_factory, write
from db.models import FLAG_RESOLUTIONS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m db", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="SQLAlchemy URL (default: AFFECTLENS_DB_URL or ./data/affectlens.db)")
    commands = parser.add_subparsers(dest="command", required=True)
    upgrade = commands.add_parser("upgrade", help="migrate to the newest schema (or --revision)")
    upgrade.add_argument("--revision", default="head")
    commands.add_parser("current", help="print the database URL and schema revision")
    commands.add_parser("videos", help="list videos with runs, open flags, pending corrections, last activity")
    flags = commands.add_parser("flags", help="list a video's flags")
    flags.add_argument("video", metavar="KEY")
    flags.add_argument("--open", action="store_true", help="only flags not yet resolved")
    resolve = commands.add_parser("resolve-flag", help="resolve a flag of a video")
    resolve.add_argument("flag_id", metavar="ID", type=int)
    resolve.add_argument("--video", required=True, metavar="KEY")
    resolve.add_argument("--reviewer", required=True, metavar="NAME")
    resolve.add_argument("--resolution", required=True, choices=FLAG_RESOLUTIONS)
    resolve.add_argument("--correction", type=int, metavar="N", help="the accepted correction that fixed it")
    resolve.add_argument("--note", default="")
    report = commands.add_parser("report", help="agreement figures as JSON")
    report.add_argument("--video", metavar="KEY", help="one video (default: all, pooled)")
    report.add_argument("--predictions", type=Path, help="the video's per-frame predictions (.parquet or .csv)")
    export = commands.add_parser("export", help="write flags and corrections (review), or ELAN / Label Studio files")
    export.add_argument("out_dir", type=Path)
    export.add_argument("--format", choices=("review", "eaf", "labelstudio"), default="review",
                        help="review: flags and corrections as CSV and JSON (default); eaf: one ELAN file per "
                             "video; labelstudio: one task file and labeling config per video")
    export.add_argument("--video", help="only this video key")
    export.add_argument("--task", choices=("va", "expr", "au"), help="(review) only this task")
    export.add_argument("--data-dir", type=Path, help="(eaf, labelstudio) where analyses and uploaded videos are "
                                                       "kept (default: AFFECTLENS_DATA_DIR or ./data)")
    export.add_argument("--media-url", help="(eaf, labelstudio) where ELAN and Label Studio reach the videos: a "
                                            "prefix for their file names, e.g. '/data/local-files/?d=videos/' "
                                            "(default: AFFECTLENS_MEDIA_URL; unset: the bare file name)")
    imports = commands.add_parser("import", help="an ELAN .eaf or a Label Studio JSON export as annotation sets")
    imports.add_argument("video", metavar="KEY")
    imports.add_argument("file", type=Path)
    imports.add_argument("--mapping", type=Path, help="(eaf) JSON {tier name: EXPR | expression | AU | "
                                                      "'AU unannotated' | valence | arousal}")
    imports.add_argument("--annotation", help="(Label Studio) the annotation id, when a task has several")
    imports.add_argument("--version", help="a label for the imported sets")
    _audit_parser(commands)
    revision = commands.add_parser("revision", help="autogenerate a migration from the models")
    revision.add_argument("-m", "--message", required=True)
    return parser


def _audit_parser(commands) -> None:
    audit = commands.add_parser("audit", help="the annotation audit's suggestions: list or export")
    audit.add_argument("action", choices=("list", "export"))
    audit.add_argument("out_dir", type=Path, nargs="?", help="export: the folder to write to")
    audit.add_argument("--run", type=int, help="audit run id (default: the newest)")
    audit.add_argument("--task", choices=("va", "expr", "au"))
    audit.add_argument("--kind", help="label, offset, sign, lag or stuck")
    audit.add_argument("--status", default=None, choices=("open", "confirmed", "dismissed"),
                       help="default: all")


def _audit(args, session) -> None:
    """`python -m db audit list|export`: the dataset queue and its progress."""
    from db import repo

    filters = dict(run_id=args.run, task=args.task, kind=args.kind)
    table = repo.suggestions_table(session, status=args.status, **filters)
    progress = repo.audit_progress(session, **filters)
    if args.action == "list":
        _print_table(table)
        print(json.dumps(progress))
        return
    if args.out_dir is None:
        raise ValueError("audit export needs OUT_DIR")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out_dir / "suggestions.csv", index=False)
    table.to_json(args.out_dir / "suggestions.json", orient="records", date_format="iso", indent=1)
    (args.out_dir / "progress.json").write_text(json.dumps(progress, indent=1))
    for name in ("suggestions.csv", "suggestions.json", "progress.json"):
        print(args.out_dir / name)


def _print_table(table: pd.DataFrame) -> None:
    print(table.to_string(index=False) if len(table) else "(none)")


def _read_predictions(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"{path}: predictions are read from .parquet or .csv")


def _run(args, engine) -> None:
    from db import repo

    if args.command in ("upgrade", "current"):
        if args.command == "upgrade":
            init_db(engine, args.revision)
        print(f"{engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")
        return
    if args.command == "revision":
        from alembic import command

        command.revision(alembic_config(engine), args.message, autogenerate=True)
        return
    init_db(engine)
    sessions = make_session_factory(engine)
    if args.command == "import":
        _import(args, sessions)
        return
    if args.command == "resolve-flag":
        flag = write(sessions, lambda session: repo.resolve_flag(
            session, args.flag_id, video=args.video, reviewer=args.reviewer, resolution=args.resolution,
            correction_id=args.correction, note=args.note))
        print(f"flag {flag.id} resolved: {flag.resolution}"
              + (f" {flag.resolved_by_correction_id}" if flag.resolved_by_correction_id else "")
              + f", by {flag.resolved_by.name}")
        return
    with make_session_factory(engine, read_only=True)() as session:
        if args.command == "videos":
            _print_table(pd.DataFrame(repo.list_videos(session), columns=[
                "key", "name", "frame_count", "runs", "latest_run_id", "open_flags", "pending_corrections",
                "last_activity"]))
        elif args.command == "flags":
            from db.export import flags_table

            table = flags_table(session, args.video)
            if args.open:
                table = table[table["resolved_at"].isna()]
            _print_table(table.drop(columns=["video"]))
        elif args.command == "audit":
            _audit(args, session)
        elif args.command == "report":
            from db.agreement import agreement_report

            predictions = _read_predictions(args.predictions) if args.predictions else None
            print(json.dumps(agreement_report(session, args.video, predictions), indent=1))
        elif args.format != "review":
            from db.interop import export_video, file_stem

            videos = [repo.get_video(session, args.video)] if args.video else \
                [repo.get_video(session, v["key"]) for v in repo.list_videos(session)]
            seen: dict[str, int] = {}
            for video in videos:              # files named after the videos; a repeated name is numbered
                stem = file_stem(video.name)
                seen[stem] = seen.get(stem, 0) + 1
                files, notes = export_video(session, video, args.out_dir, (args.format,), data_dir=args.data_dir,
                                            media_url=args.media_url,
                                            stem=stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
                print(*files.values(), sep="\n")
                for note in notes:
                    print(note, file=sys.stderr)
        else:
            from db.export import export_corrections, export_flags

            for suffix in ("csv", "json"):
                for name, export_to in (("corrections", export_corrections), ("flags", export_flags)):
                    print(export_to(session, args.out_dir / f"{name}.{suffix}", video=args.video, task=args.task))


def _import(args, sessions) -> None:
    from db.interop import import_eaf, import_label_studio

    if args.file.suffix.lower() == ".eaf":
        sets, notes = write(sessions, lambda s: import_eaf(s, args.video, args.file, args.mapping, args.version))
    elif args.file.suffix.lower() == ".json":
        sets, notes = write(sessions, lambda s: import_label_studio(
            s, args.video, args.file, args.annotation, args.version)), []
    else:
        raise ValueError(f"{args.file.name}: import an ELAN .eaf or a Label Studio .json export")
    for note in notes:
        print(note, file=sys.stderr)
    for annotation_set in sets:
        print(f"annotation set {annotation_set.id}: {annotation_set.task} of {args.video}, "
              f"{annotation_set.frame_count} frames")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    engine = make_engine(args.url)
    try:
        _run(args, engine)
    except (ValueError, OSError) as e:     # refused input (ValidationError is a ValueError): one line
        print(f"python -m db {args.command}: {e}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
