"""Command line: ``python -m llmrec_lite COMMAND ...``.

Every command prints human-readable progress on stderr and, as the last line of
stdout, one JSON object that scripts and benchmarks read (``{"error": ...}`` with exit
status 2 when something is wrong).

Defaults are not written here: each option's default comes from the settings class that
uses it (which takes it from :class:`~llmrec_lite.profiles.Profile`), and options left out
take the chosen profile's value.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
import signal
import sys
import time

import torch

from llmrec_lite import registry
from llmrec_lite.backbone import BackboneSettings, load_tokenizer
from llmrec_lite.data import INDEXINGS, DataFormatError, load_dataset
from llmrec_lite.evaluate import evaluate_model, evaluation_users
from llmrec_lite.fileio import atomic_path, check_writable
from llmrec_lite.metrics import check_catalogue_size, evaluate_dot_product
from llmrec_lite.pipeline import run_pipeline
from llmrec_lite.profiles import PROFILES, Profile, get_profile
from llmrec_lite.prompts import PromptEncoder
from llmrec_lite.recommend import ClassicRecommender, recommend
from llmrec_lite.runs import FinishedWorkError, Run, open_saved, wals_metadata
from llmrec_lite.settings import TrainSettings
from llmrec_lite.split import LeaveOneOutSplit
from llmrec_lite.templates import get_template
from llmrec_lite.variants import OUTPUTS, TARGETS, Variant
from llmrec_lite.wals import BACKENDS, SOLVERS, WALS, WALSConfig


class CommandLineError(ValueError):
    """Arguments that parse but do not make sense together."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error also ends with the JSON error line every command promises."""

    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        _emit({"error": message})
        raise SystemExit(2)


# --------------------------------------------------------------------------- shared arguments


def _add_source_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--dataset", help=f"registered dataset: {', '.join(registry.DATASETS)}")
    source.add_argument("--path", help="your own data file in the S3Rec format (user item item ...)")
    parser.add_argument("--name", default=None, help="with --path: the dataset's name in prompts (default: the file's stem)")
    parser.add_argument("--data-dir", default=None, help=f"data cache (default: ${registry.DATA_DIR_ENV})")


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    _add_source_args(parser)
    parser.add_argument("--indexing", default=Profile.indexing, choices=INDEXINGS)
    parser.add_argument("--seed", type=_seed, default=Profile.seed, help=f"indexing seed, 0 to {MAX_SEED}")


def _add_targets_arg(parser: argparse.ArgumentParser, help_: str = "which targets: test (last item) or valid") -> None:
    parser.add_argument("--targets", default=None, choices=TARGETS, help=help_ + " (default: test)")


MAX_SEED = 2**32 - 1  # numpy's legacy generators and every torch device take seeds in this range


def _seed(text: str) -> int:
    """``--seed``: an integer numpy and torch both accept, refused by name otherwise."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give a seed from 0 to {MAX_SEED}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is out of range; give a seed from 0 to {MAX_SEED}")
    return value


def _targets(args) -> str:
    return args.targets or "test"


def _load(args):
    data = load_dataset(name=args.dataset, path=args.path, indexing=args.indexing, seed=args.seed, data_dir=args.data_dir,
                        display_name=args.name)
    return data, LeaveOneOutSplit.from_data(data)


def _profile(name: str):
    return get_profile(name)


def _variant(args) -> Variant:
    return Variant(args.output, not args.text_only)


def _check_run_source(args, run) -> None:
    """``--dataset`` and ``--name`` beside ``--run`` must agree with the run (the run decides)."""
    if args.dataset is not None and args.dataset != run.data.name:
        raise CommandLineError(f"--run {args.run} holds a run of {run.data.name!r}, not {args.dataset!r}: drop "
                               "--dataset (the run knows its data) or give the run folder of that dataset.")
    if args.name is not None and args.name != run.data.display_name:
        raise CommandLineError(f"--run {args.run} names its data {run.data.display_name!r} in prompts, not {args.name!r}: "
                               "drop --name (a trained model keeps the name it was trained with).")


def _user_index(data, user_id) -> int:
    """The index of a user named as in the data file."""
    matches = [i for i, raw in enumerate(data.raw_user_ids.tolist()) if str(raw) == str(user_id)]
    if not matches:
        raise ValueError(f"Unknown user {user_id!r}: {data.name} has {data.num_users} users "
                         f"(ids as in its file, e.g. {data.raw_user_ids[0]} to {data.raw_user_ids[-1]}).")
    return matches[0]


# --------------------------------------------------------------------------- commands


def cmd_data(args) -> dict:
    data, split = _load(args)
    return {**data.stats(), **split.stats(), "source": data.source}


def cmd_wals(args) -> dict:
    targets = _targets(args)
    if args.out:
        check_writable(args.out, "--out", is_dir=True)
        if (Path(args.out) / "wals.json").exists() and not args.overwrite:
            raise FileExistsError(f"{args.out} already holds WALS factors (a run's stages may depend on them). "
                                  "Pass --overwrite to replace them, or choose another --out.")
    torch.manual_seed(args.seed)
    data, split = _load(args)
    check_catalogue_size(split.num_items, name=data.name)  # before the fit: its metrics would mean nothing
    given = {"num_factors": args.factors, "regularization": args.regularization, "alpha": args.alpha,
             "iterations": args.iterations, "backend": args.backend, "solver": args.solver, "cg_steps": args.cg_steps,
             "device": args.device, "seed": args.seed}
    config = WALSConfig.from_profile(_profile(args.profile), **{k: v for k, v in given.items() if v is not None})
    start = time.perf_counter()
    try:
        model = WALS(config).fit(split.train_matrix())
    except RuntimeError as err:
        if "alloc" not in str(err):
            raise
        raise ValueError(f"--factors {config.num_factors} needs more memory than this machine has ({err}). "
                          "Use fewer factors (the profiles use 64).") from err
    seconds = time.perf_counter() - start
    metrics = evaluate_dot_product(model.user_factors, model.item_factors, split, targets=targets)
    out = {
        "dataset": data.name,
        "backend": config.backend,
        "solver": config.solver,
        "device": config.device,
        "factors": config.num_factors,
        "iterations": config.iterations,
        "seconds": seconds,
        "seconds_per_iteration": model.seconds_per_iteration,
        "final_loss": model.final_loss,
        "targets": targets,
        **metrics,
    }
    if args.out:
        model.save(args.out, wals_metadata(data, metrics=metrics, profile=args.profile))
        out["out"] = str(args.out)
        out["fingerprint"] = model.fingerprint()
    return out


def cmd_prompt(args) -> dict:
    targets = _targets(args)
    data, split = _load(args)
    user = args.user - 1  # ids as the prompts show them start at 1
    if not 0 <= user < data.num_users:
        raise ValueError(f"Unknown user {args.user}: {data.name} has users 1-{data.num_users}.")
    template = get_template(args.task, args.template)
    tokenizer = load_tokenizer(args.backbone)
    add_bos = BackboneSettings(kind=args.backbone).add_bos
    encoder = PromptEncoder(split, tokenizer, add_bos, args.max_history, with_embeddings=not args.text_only)
    as_text = PromptEncoder(split, tokenizer, add_bos, args.max_history, with_embeddings=False)
    history, target = split.history(user, targets), int(split.target_items(targets)[user])
    rendered = encoder.render(template, user, history, target)
    encoded = encoder.encode_rendered(rendered)
    plain = as_text.encode(template, user, history, target)
    print(rendered.as_text())
    return {
        "template": rendered.template,
        "task": args.task,
        "user": args.user,
        "target": data.item_text(target),
        "targets": targets,
        "text_tokens": encoded.num_text_tokens,
        "slots": len(encoded.slot_positions),
        "user_slots": encoded.slot_kinds.count("user"),
        "item_slots": encoded.slot_kinds.count("item"),
        "response_tokens": encoded.num_response_tokens,
        "prompt_positions": encoded.response_start,
        "prompt_positions_ids_as_text": plain.response_start,
        "backbone": args.backbone,
    }


def cmd_train(args) -> dict:
    if args.resume and args.overwrite:
        raise CommandLineError("--resume and --overwrite contradict each other: --resume continues (or reuses) the "
                               "stage in --out, --overwrite deletes it and starts again. Pass one of them.")
    profile = _profile(args.profile)
    overrides = {} if args.samples is None else {"samples_per_task": args.samples}
    # built before anything loads, so that a bad value fails in a second
    settings = TrainSettings.from_profile(profile, args.stage, _variant(args), **overrides)
    check_writable(args.out, "--out", is_dir=True)
    run = Run.open(profile, args.dataset, args.out, data_dir=args.data_dir, path=args.path, display_name=args.name)
    return run.train(settings, resume=args.resume, overwrite=args.overwrite, stop_after_steps=args.stop_after_steps)


def cmd_evaluate(args) -> dict:
    targets, stage, variant = _targets(args), args.stage, _variant(args)
    get_template(args.task, args.template)  # an unknown template fails before anything loads
    if args.users is not None and args.users < 1:
        raise ValueError(f"--users {args.users}: evaluate at least 1 user (or leave --users out for all).")
    if args.dump_rankings:
        check_writable(args.dump_rankings, "--dump-rankings")
        if Path(args.dump_rankings).exists() and not args.overwrite:
            raise FileExistsError(f"--dump-rankings {args.dump_rankings} already exists. Pass --overwrite to replace it, "
                                  "or give a new file name.")
    run = open_saved(args.run, data_dir=args.data_dir, path=args.path, variant=variant, stage=stage)
    _check_run_source(args, run)
    check_catalogue_size(run.split.num_items, name=run.data.name)
    trained = run.load(variant, stage)
    users = evaluation_users(run.split, args.users, seed=run.profile.seed)
    extra = {"cf_weight": args.cf_weight} if args.cf_weight else {}
    ev = evaluate_model(trained, task=args.task, template=args.template, targets=targets, users=users,
                        mask_history=args.mask_history, **extra)
    if args.dump_rankings:
        with atomic_path(args.dump_rankings) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in ev.rankings(run.data)))
    return {**ev.metrics, "variant": variant.name, "stage": stage, "dataset": run.data.name,
            "max_history": trained.encoder.max_history}


def cmd_run(args) -> dict:
    check_writable(args.out, "--out", is_dir=True)
    try:
        result = run_pipeline(_profile(args.profile), args.dataset, args.out, data_dir=args.data_dir, path=args.path,
                              display_name=args.name)
    except FinishedWorkError as err:  # its message names train's flags, which run does not take
        raise FinishedWorkError(
            f"{err} `run` itself never replaces a stage: give it another --out, or retrain that stage with "
            f"`python -m llmrec_lite train --stage K --overwrite` and --profile {args.profile}.") from err
    return {"results": str(Path(args.out) / "results.json"), "table": str(Path(args.out) / "results.md"),
            "rows": len(result["rows"])}


def cmd_recommend(args) -> dict:
    targets, stage = _targets(args), args.stage
    if args.k < 1:
        raise ValueError(f"--k {args.k}: recommend at least 1 item.")
    fusion = args.model in OUTPUTS
    variant = Variant(args.model, not args.text_only) if fusion else None
    get_template(args.task, args.template)  # checked for every --model, though classic ones read no prompt
    run = open_saved(args.run, data_dir=args.data_dir, path=args.path, variant=variant, stage=stage if fusion else None)
    _check_run_source(args, run)
    user = _user_index(run.data, args.user)
    model = run.load(variant, stage) if fusion else ClassicRecommender(run, args.model)
    exclude_seen = not args.include_seen
    kwargs = {"targets": targets, "task": args.task, "template": args.template} if fusion else {"targets": targets}
    if args.cf_weight:
        if not fusion:
            raise ValueError("--cf-weight fuses a fusion model's scores with WALS; a classic baseline takes none.")
        kwargs["cf_weight"] = args.cf_weight
    indices = recommend(model, [user], k=args.k, exclude_seen=exclude_seen, as_indices=True, **kwargs)[0]
    if len(indices) < args.k:
        print(f"note: user {args.user} has {len(indices)} item(s) to recommend"
              + (" outside their history" if exclude_seen else "") + f", fewer than --k {args.k}.", file=sys.stderr)
    out = {"user": args.user, "items": run.data.raw_item_ids[indices].tolist(), "k": len(indices),
           "k_requested": args.k, "model": args.model,
           "exclude_seen": exclude_seen, "targets": targets, "dataset": run.data.name,
           "item_ids_in_prompts": [run.data.item_id(i) for i in indices]}
    if fusion:
        out.update({"variant": variant.name, "stage": stage})
    return out


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m llmrec_lite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    profiles = ", ".join(PROFILES)

    p = sub.add_parser("data", help="load a dataset, split it and print its statistics")
    _add_data_args(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("wals", help="fit WALS on the training interactions and evaluate the embeddings")
    _add_data_args(p)
    p.add_argument("--profile", default="cpu", help=f"whose WALS settings fill the options left out ({profiles})")
    p.add_argument("--factors", type=int, default=None, help="embedding dimension (default: the profile's)")
    p.add_argument("--iterations", type=int, default=None, help="alternating sweeps (default: the profile's)")
    p.add_argument("--regularization", type=float, default=None, help="L2 weight (default: the profile's)")
    p.add_argument("--alpha", type=float, default=None, help="confidence slope (default: the profile's)")
    p.add_argument("--backend", default=WALSConfig.backend, choices=BACKENDS)
    p.add_argument("--solver", default=WALSConfig.solver, choices=SOLVERS)
    p.add_argument("--cg-steps", type=int, default=None, help="CG steps per half-step (default: the profile's)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: the profile's)")
    _add_targets_arg(p, "which targets to evaluate")
    p.add_argument("--out", default=None, help="folder to save factors.safetensors and wals.json")
    p.add_argument("--overwrite", action="store_true", help="replace factors already in --out")
    p.set_defaults(func=cmd_wals)

    p = sub.add_parser("prompt", help="render one prompt with its embedding slots")
    _add_data_args(p)
    p.add_argument("--task", default="sequential", choices=["sequential", "direct"])
    p.add_argument("--template", default="0", help="0-9 (training templates) or 'unseen'")
    p.add_argument("--user", type=int, required=True, help="user id as in the prompts (1-based)")
    _add_targets_arg(p, "whose history and target")
    p.add_argument("--max-history", type=int, default=Profile.max_history)
    p.add_argument("--text-only", action="store_true", help="ids written as text (the baseline's prompt)")
    p.add_argument("--backbone", default=Profile.backbone, choices=["cpu", "gpu", "tiny"],
                   help="whose tokenizer counts tokens")
    p.set_defaults(func=cmd_prompt)

    p = sub.add_parser("train", help="train one stage (1: projectors, 2: projectors + LoRA)")
    _add_source_args(p)
    p.add_argument("--profile", default="cpu", help=f"{profiles} (llmrec_lite.profiles)")
    p.add_argument("--stage", type=int, choices=[1, 2], required=True)
    p.add_argument("--out", required=True, help="run directory (shared by both stages and both output sides)")
    p.add_argument("--output", default=Variant.output, choices=OUTPUTS, help="how the model names the item")
    p.add_argument("--text-only", action="store_true", help="the baseline: ids as text, no CF embeddings")
    p.add_argument("--samples", type=int, default=None, help="training prompts per task (overrides the profile)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint in --out (a finished stage is reused)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished or interrupted stage in --out")
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)  # tests: simulate a kill
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="rank the catalogue with a trained model (leave-one-out)")
    p.add_argument("--run", required=True, help="run directory given to train --out")
    _add_source_args(p, required=False)
    p.add_argument("--output", default=Variant.output, choices=OUTPUTS)
    p.add_argument("--text-only", action="store_true", help="evaluate the baseline without CF embeddings")
    p.add_argument("--stage", type=int, default=2, choices=[1, 2], help="training stage of the model (default 2)")
    p.add_argument("--task", default="sequential", choices=["sequential", "direct"])
    p.add_argument("--template", default="seen", help="seen (training template 0), unseen, or 0-9")
    _add_targets_arg(p)
    p.add_argument("--users", type=int, default=None, help="evaluate a seeded subset of users (default: all)")
    p.add_argument("--mask-history", action="store_true", help="exclude each user's history items")
    p.add_argument("--dump-rankings", default=None,
                   help="JSON-lines file, one line per user: the top-10 items and the gold item, as the prompts name "
                        "them (user, gold, top) and as your data file does (user_in_file, gold_in_file, top_in_file)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --dump-rankings file")
    p.add_argument("--cf-weight", type=float, default=0.0,
                   help="item-token models: late fusion with the WALS score at this weight (0: the model alone)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="the whole pipeline: WALS, both stages, baselines, evaluation, results")
    _add_source_args(p)
    p.add_argument("--profile", default="cpu", help=profiles)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("recommend", help="the top-k items for one user, from a trained run")
    p.add_argument("--run", required=True, help="run directory given to train --out or run --out")
    _add_source_args(p, required=False)
    p.add_argument("--user", required=True, help="user id as in the data file")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--model", default=Variant.output, choices=[*OUTPUTS, "popularity", "wals", "bpr"],
                   help="a fusion model's output side, or a classic baseline")
    p.add_argument("--text-only", action="store_true", help="the fusion baseline without CF embeddings")
    p.add_argument("--stage", type=int, default=2, choices=[1, 2], help="training stage of a fusion model")
    p.add_argument("--task", default="sequential", choices=["sequential", "direct"])
    p.add_argument("--template", default="seen")
    _add_targets_arg(p, "which history: before the test target (all but the last item) or the valid one")
    p.add_argument("--include-seen", action="store_true", help="keep the user's history items in the ranking")
    p.add_argument("--cf-weight", type=float, default=0.0,
                   help="item-token models: late fusion with the WALS score at this weight (0: the model alone)")
    p.set_defaults(func=cmd_recommend)
    return parser


def _json_safe(value):
    """``NaN`` and infinities become ``null``: the JSON line stays valid JSON for every reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class Terminated(RuntimeError):
    """The process was asked to stop (SIGTERM or Ctrl-C); ``args``: the message and the signal."""


def _stopped(signum: int, command: str | None) -> Terminated:
    """The error a stop by ``signum`` ends ``command`` with: how to continue depends on what it writes."""
    name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name
    if command == "train":
        how = "The stage keeps its last checkpoint: run the same command with --resume to continue it."
    elif command == "run":
        how = ("Finished stages and evaluations are kept and an interrupted stage keeps its last checkpoint: run the "
               "same command again to continue.")
    else:
        how = "Nothing partial was written: run the same command again."
    return Terminated(f"Stopped by {name}. {how}", signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # a stop, by SIGTERM or Ctrl-C, still ends with the JSON line (status 128 + the signal's number)
    def on_signal(signum, frame):
        raise _stopped(signum, args.command)

    for signum in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup` and background jobs ignore on purpose
            signal.signal(signum, on_signal)
    try:
        result = args.func(args)
    except KeyboardInterrupt:  # a Ctrl-C that arrived before the handler was in place
        _emit_error(_stopped(signal.SIGINT, args.command).args[0])
        return 128 + signal.SIGINT
    except (KeyError, DataFormatError, FileNotFoundError, FileExistsError, registry.ChecksumError, RuntimeError,
            ValueError, OSError) as err:
        message = err.args[0] if isinstance(err, (KeyError, Terminated)) and err.args else str(err)
        _emit_error(message)
        return 128 + int(err.args[1]) if isinstance(err, Terminated) else 2
    _emit(_json_safe(result))
    return 0


def _emit_error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    _emit({"error": message})


def _emit(obj: dict) -> None:
    """The JSON line, written and flushed in one piece: processes launched together share one
    stdout, and a line written in parts could interleave with another's."""
    sys.stdout.flush()
    sys.stdout.write(json.dumps(obj, allow_nan=False) + "\n")
    sys.stdout.flush()
