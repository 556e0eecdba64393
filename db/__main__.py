"""Database maintenance from the command line (the URL comes from --url or the usual configuration):

    python -m db upgrade                 create or migrate the database to the newest schema
    python -m db current                 print the URL (password hidden) and the schema revision
    python -m db export OUT_DIR          write flags and corrections as CSV and JSON (with audit trail)
    python -m db revision -m "message"   (developers) a new migration from the changed models
"""
from __future__ import annotations

import argparse
from pathlib import Path

from db.engine import alembic_config, current_revision, init_db, make_engine, make_session_factory


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m db", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="SQLAlchemy URL (default: AFFECTLENS_DB_URL or ./data/affectlens.db)")
    commands = parser.add_subparsers(dest="command", required=True)
    upgrade = commands.add_parser("upgrade", help="migrate to the newest schema (or --revision)")
    upgrade.add_argument("--revision", default="head")
    commands.add_parser("current", help="print the database URL and schema revision")
    export = commands.add_parser("export", help="write flags and corrections as CSV and JSON")
    export.add_argument("out_dir", type=Path)
    export.add_argument("--video", help="only this video key")
    export.add_argument("--task", choices=("va", "expr", "au"))
    revision = commands.add_parser("revision", help="autogenerate a migration from the models")
    revision.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)

    engine = make_engine(args.url)
    try:
        if args.command == "upgrade":
            init_db(engine, args.revision)
            print(f"{engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")
        elif args.command == "current":
            print(f"{engine.url.render_as_string(hide_password=True)} at revision {current_revision(engine)}")
        elif args.command == "export":
            from db.export import export_corrections, export_flags

            init_db(engine)
            with make_session_factory(engine)() as session:
                for suffix in ("csv", "json"):
                    for name, write in (("corrections", export_corrections), ("flags", export_flags)):
                        path = write(session, args.out_dir / f"{name}.{suffix}", video=args.video, task=args.task)
                        print(path)
        else:
            from alembic import command

            command.revision(alembic_config(engine), args.message, autogenerate=True)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
