"""Record: can the text-id side learn at all, in the cpu profile's own configuration?

A model that can learn memorises a handful of prompts: trained again and again on 32 LastFM
training prompts (SmolLM2's tokenizer, the profile's LoRA targets, precision, user vectors
and head; projectors and LoRA trained together, as in stage 2), beam search over the whole
catalogue on those same 32 prompts should name each prompt's own answer first (HR@1 near 1).
Near 0 would point at a defect, not at the budget. Only training prompts are read
(:func:`llmrec_lite.diagnose.overfit_text_id`).

    python benchmarks/overfit_text_id.py --prompts 32 --epochs 60
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
import sys
import tempfile

from llmrec_lite.device import describe_machine
from llmrec_lite.diagnose import overfit_text_id
from llmrec_lite.fileio import write_json
from llmrec_lite.profiles import get_profile
from llmrec_lite.runs import Run


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--dataset", default="lastfm")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=None, help="one rate for every part (default: the profile's)")
    parser.add_argument("--out", default=None, help="JSON record (default: benchmarks/results/overfit_text_id_<profile>.json)")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run.open(profile, args.dataset, Path(tmp) / "run", show_progress=False)
        measured = overfit_text_id(run, args.prompts, args.epochs, lr=args.lr)
    result = {"benchmark": "overfit_text_id",
              "question": "does the text-id side memorise a few prompts in the profile's configuration?",
              "profile": profile.name, "dataset": args.dataset, "lora_targets": list(profile.lora_targets), **measured,
              "machine": describe_machine(), "date": datetime.date.today().isoformat()}
    out = Path(args.out or Path(__file__).parent / "results" / f"overfit_text_id_{profile.name}.json")
    write_json(out, result)
    print({k: v for k, v in result.items() if k != "machine"}, file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
