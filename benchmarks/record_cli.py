"""What the record-making scripts (tune, stage_split, distance, fusion) share: their common
options, where a record and its runs go, and how a finished record is written (with the
machine and date, never over an earlier record unless asked)."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from llmrec_lite.device import describe_machine
from llmrec_lite.fileio import write_json
from llmrec_lite.profiles import get_profile


def add_record_args(parser: argparse.ArgumentParser, runs_kind: str, runs_help: str = "folder of the runs") -> None:
    """``--dataset``, ``--profile``, ``--runs`` (default ``runs/<runs_kind>/<dataset>``), ``--out``, ``--overwrite``."""
    parser.add_argument("--dataset", default="lastfm")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--runs", default=None, help=f"{runs_help} (default runs/{runs_kind}/<dataset>)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing record")


def record_paths(parser: argparse.ArgumentParser, args, kind: str, runs_kind: str, adding: bool = False):
    """``(profile, record file, runs folder)``; refuses (a usage error) to replace a finished
    record without ``--overwrite``, and to add to one that does not exist (``adding``: the
    script keeps the record's rows and adds its own). The record goes to
    benchmarks/results/<kind>_<dataset>_<profile>.json."""
    profile = get_profile(args.profile)
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"{kind}_{args.dataset}_{profile.name}.json"
    if adding and not out.exists():
        parser.error(f"--add needs an existing record, and {out} does not exist")
    if out.exists() and not (args.overwrite or adding):
        parser.error(f"{out} holds a finished record; pass --overwrite to replace it, or --out elsewhere")
    runs = Path(args.runs) if args.runs else Path("runs") / runs_kind / args.dataset
    return profile, out, runs


def write_record(out: Path, record: dict) -> dict:
    """Writes the record (atomically) with the machine and today's date; returns what was written."""
    record = {**record, "machine": describe_machine(), "date": datetime.date.today().isoformat()}
    write_json(out, record)
    return record
