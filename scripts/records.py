"""The record store from the command line: migrate its schema, list and show records, label, purge old
records, delete by id or sha256, and report model-vs-reviewer agreement. The store is the one
config/records.yaml names (DEEPFAKE_RECORDS_URL overrides it; --url overrides both).

  python -m scripts.records migrate
  python -m scripts.records list --verdict uncertain --unlabelled
  python -m scripts.records label 3f2a... fake --note "known face-swap" --reviewer alice
  python -m scripts.records purge                      # older than retention_days
  python -m scripts.records delete --sha256 9c1e...    # a person's request to forget an upload
  python -m scripts.records report --model deepfake-detector --png results/records/agreement.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from deepfake_service.project import handler_options
from deepfake_service.records import migrate, read_settings, redacted
from deepfake_service.records.review import (
    Filters,
    ReviewError,
    add_label,
    agreement_over_time,
    delete_records,
    get_record,
    labelled_set,
    list_records,
)
from deepfake_service.training.operating_point import review_report, save_agreement_figure
from handler.store import LABELS, connect, purge_older_than


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="SQLAlchemy URL of the store (default: config/records.yaml, DEEPFAKE_RECORDS_URL over it)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the schema (Alembic)")
    listing = sub.add_parser("list", help="records, uncertain first, newest first")
    listing.add_argument("--verdict", choices=("real", "fake", "uncertain"))
    listing.add_argument("--unlabelled", action="store_true")
    listing.add_argument("--limit", type=int, default=20)
    show = sub.add_parser("show", help="one record with its labels")
    show.add_argument("id")
    label = sub.add_parser("label", help="append a human label to a record")
    label.add_argument("id")
    label.add_argument("label", choices=LABELS)
    label.add_argument("--note")
    label.add_argument("--reviewer", required=True)
    cleaning = sub.add_parser("purge", help="delete records older than --days (default: retention_days)")
    cleaning.add_argument("--days", type=int)
    removal = sub.add_parser("delete", help="delete records by id or by the sha256 of their bytes")
    removal.add_argument("--id", action="append", default=[])
    removal.add_argument("--sha256", action="append", default=[])
    report = sub.add_parser("report", help="model-vs-reviewer agreement on labelled image records")
    report.add_argument("--model")
    report.add_argument("--version")
    report.add_argument("--fake-label", help="(default: the model config's fake_label)")
    report.add_argument("--png", type=Path, default=Path("results/records/agreement.png"),
                        help="the picture of agreement, false positives and fakes called real per model version over time (default: %(default)s)")
    report.add_argument("--bucket", choices=("day", "week"), default="day", help="the picture's time step (default: %(default)s)")
    args = parser.parse_args(argv)

    settings = read_settings()
    url = args.url or settings.url
    if url in ("", "off"):
        sys.exit("records: the store is off (config/records.yaml url: off); give --url")
    try:
        if args.command == "migrate":
            migrate(url)
            print(f"records: {redacted(url)} is at the newest schema")
            return
        engine = connect(url)
        if args.command == "list":
            rows = list_records(engine, Filters(verdict=args.verdict, labelled=False if args.unlabelled else None, limit=args.limit))
            for row in rows:
                print(f"{row['id']}  {row['created_at']}  {row['media'] or '-':5}  {row['verdict'] or row['error']:<12}  "
                      f"label {row['label'] or '-':6}  {row['client'] or '-'}")
        elif args.command == "show":
            print(json.dumps(get_record(engine, args.id), indent=2))
        elif args.command == "label":
            print(json.dumps(add_label(engine, args.id, args.label, args.note, args.reviewer)))
        elif args.command == "purge":
            days = settings.retention_days if args.days is None else args.days
            print(f"records: purged {purge_older_than(engine, days)} older than {days} days")
        elif args.command == "delete":
            print(f"records: deleted {delete_records(engine, args.id, args.sha256)}")
        elif args.command == "report":
            fake_label = args.fake_label or handler_options().fake_label
            over_time = [row for row in agreement_over_time(engine, args.bucket)
                         if args.model in (None, row["model"]) and args.version in (None, row["version"])]
            print(json.dumps({**review_report(labelled_set(engine, fake_label, args.model, args.version)), "over_time": over_time}, indent=2))
            print(f"records: wrote {save_agreement_figure(over_time, args.png)}", file=sys.stderr)
    except ReviewError as exc:
        sys.exit(f"records: {exc}")
    except SQLAlchemyError as exc:
        sys.exit(f"records: the store at {redacted(url)} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")


if __name__ == "__main__":
    main()
