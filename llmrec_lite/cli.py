"""Command line: ``python -m llmrec_lite COMMAND ...``.

Every command prints human-readable progress on stderr and, as the last line of
stdout, one JSON object that scripts and benchmarks read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from llmrec_lite import registry
from llmrec_lite.data import DataFormatError, INDEXINGS, load_dataset
from llmrec_lite.split import LeaveOneOutSplit


def _add_data_args(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help=f"registered dataset: {', '.join(registry.DATASETS)}")
    source.add_argument("--path", help="a data file in the S3Rec format (user item item ...)")
    parser.add_argument("--indexing", default="sequential", choices=INDEXINGS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help=f"data cache (default: ${registry.DATA_DIR_ENV})")


def _load(args):
    data = load_dataset(name=args.dataset, path=args.path, indexing=args.indexing, seed=args.seed, data_dir=args.data_dir)
    return data, LeaveOneOutSplit.from_data(data)


def cmd_data(args) -> dict:
    data, split = _load(args)
    return {**data.stats(), **split.stats(), "source": data.source}


def cmd_wals(args) -> dict:
    import torch

    from llmrec_lite.metrics import evaluate_dot_product
    from llmrec_lite.wals import WALS, WALSConfig

    torch.manual_seed(args.seed)
    data, split = _load(args)
    config = WALSConfig(
        num_factors=args.factors,
        regularization=args.regularization,
        alpha=args.alpha,
        iterations=args.iterations,
        backend=args.backend,
        solver=args.solver,
        cg_steps=args.cg_steps,
        seed=args.seed,
        device=args.device,
    )
    start = time.perf_counter()
    model = WALS(config).fit(split.train_matrix())
    seconds = time.perf_counter() - start
    metrics = evaluate_dot_product(model.user_factors, model.item_factors, split, stage=args.stage)
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
        "stage": args.stage,
        **metrics,
    }
    if args.out:
        model.save(args.out, {"dataset": data.name, "indexing": data.indexing, "indexing_seed": data.seed,
                              "source": data.source, "metrics": metrics})
        out["out"] = str(args.out)
        out["fingerprint"] = model.fingerprint()
    return out


def cmd_prompt(args) -> dict:
    from llmrec_lite.backbone import load_tokenizer
    from llmrec_lite.prompts import encode, render
    from llmrec_lite.templates import get_template

    data, split = _load(args)
    user = args.user - 1  # ids as the prompts show them start at 1
    if not 0 <= user < data.num_users:
        raise ValueError(f"Unknown user {args.user}: {data.name} has users 1-{data.num_users}.")
    template = get_template(args.task, args.template)
    tokenizer = load_tokenizer(args.backbone)
    history, target = split.history(user, args.stage), int(split.targets(args.stage)[user])
    rendered = render(template, data, user, history, target, with_embeddings=not args.text_only,
                      max_history=args.max_history)
    encoded = encode(rendered, tokenizer, add_bos=args.backbone == "gpu")
    as_text = encode(render(template, data, user, history, target, with_embeddings=False,
                            max_history=args.max_history), tokenizer, add_bos=args.backbone == "gpu")
    print(rendered.as_text())
    return {
        "template": rendered.template,
        "task": args.task,
        "user": args.user,
        "target": data.item_text(target),
        "text_tokens": encoded.num_text_tokens,
        "slots": len(encoded.slot_positions),
        "user_slots": encoded.slot_kinds.count("user"),
        "item_slots": encoded.slot_kinds.count("item"),
        "response_tokens": encoded.num_response_tokens,
        "prompt_positions": encoded.response_start,
        "prompt_positions_ids_as_text": as_text.response_start,
        "backbone": args.backbone,
    }


def cmd_train(args) -> dict:
    from llmrec_lite.profiles import get_profile
    from llmrec_lite.train import prepare_run, train_stage

    profile = get_profile(args.profile)
    overrides = {}
    if args.samples is not None:
        overrides["samples_per_task"] = args.samples
    settings = profile.train_settings(args.stage, args.output, use_embeddings=not args.text_only, **overrides)
    ctx = prepare_run(profile, args.dataset, args.out, data_dir=args.data_dir)
    return train_stage(ctx, settings, args.out, resume=args.resume, stop_after_steps=args.stop_after_steps)


def cmd_evaluate(args) -> dict:
    from llmrec_lite.evaluate import evaluate_model, evaluation_users
    from llmrec_lite.profiles import get_profile
    from llmrec_lite.train import load_trained, prepare_run, stage_dir

    variant = args.output + ("-text" if args.text_only else "")
    config_path = stage_dir(args.run, variant, args.model_stage) / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} not found: train {variant} stage {args.model_stage} into {args.run} first.")
    saved = json.loads(config_path.read_text())
    profile = get_profile(saved["profile"])
    ctx = prepare_run(profile, saved["dataset"], args.run, data_dir=args.data_dir)
    model, _ = load_trained(ctx, args.run, variant, args.model_stage)
    users = evaluation_users(ctx.split, args.users, seed=profile.seed)
    ev = evaluate_model(model, ctx.split, task=args.task, template=args.template, stage=args.stage, users=users,
                        mask_history=args.mask_history, max_history=profile.max_history)
    if args.dump_rankings:
        from llmrec_lite.fileio import atomic_path

        with atomic_path(args.dump_rankings) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in ev.rankings(ctx.data)))
    return {**ev.metrics, "variant": variant, "model_stage": args.model_stage, "dataset": ctx.data.name}


def cmd_run(args) -> dict:
    from llmrec_lite.pipeline import run_pipeline
    from llmrec_lite.profiles import get_profile

    result = run_pipeline(get_profile(args.profile), args.dataset, args.out, data_dir=args.data_dir)
    return {"results": str(Path(args.out) / "results.json"), "table": str(Path(args.out) / "results.md"),
            "rows": len(result["rows"])}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m llmrec_lite", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="load a dataset, split it and print its statistics")
    _add_data_args(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("wals", help="fit WALS on the training interactions and evaluate the embeddings")
    _add_data_args(p)
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--regularization", type=float, default=0.05)
    p.add_argument("--alpha", type=float, default=10.0)
    p.add_argument("--backend", default="torch", choices=["torch", "implicit"])
    p.add_argument("--solver", default="cg", choices=["cg", "batched", "reference"])
    p.add_argument("--cg-steps", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--stage", default="test", choices=["test", "valid"], help="which targets to evaluate")
    p.add_argument("--out", default=None, help="folder to save factors.safetensors and wals.json")
    p.set_defaults(func=cmd_wals)

    p = sub.add_parser("prompt", help="render one prompt with its embedding slots")
    _add_data_args(p)
    p.add_argument("--task", default="sequential", choices=["sequential", "direct"])
    p.add_argument("--template", default="0", help="0-9 (training templates) or 'unseen'")
    p.add_argument("--user", type=int, required=True, help="user id as in the prompts (1-based)")
    p.add_argument("--stage", default="test", choices=["test", "valid"], help="which history and target")
    p.add_argument("--max-history", type=int, default=10)
    p.add_argument("--text-only", action="store_true", help="ids written as text (the baseline's prompt)")
    p.add_argument("--backbone", default="cpu", choices=["cpu", "gpu", "tiny"], help="whose tokenizer counts tokens")
    p.set_defaults(func=cmd_prompt)

    p = sub.add_parser("train", help="train one stage (1: projectors, 2: projectors + LoRA)")
    p.add_argument("--dataset", required=True, help=f"registered dataset: {', '.join(registry.DATASETS)}")
    p.add_argument("--profile", default="cpu", help="cpu, gpu or smoke (llmrec_lite.profiles)")
    p.add_argument("--stage", type=int, choices=[1, 2], required=True)
    p.add_argument("--out", required=True, help="run directory (shared by both stages and both output sides)")
    p.add_argument("--output", default="item-token", choices=["item-token", "text-id"], help="how the model names the item")
    p.add_argument("--text-only", action="store_true", help="the baseline: ids as text, no CF embeddings")
    p.add_argument("--samples", type=int, default=None, help="training prompts per task (overrides the profile)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS)  # tests: simulate a kill
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="rank the catalogue with a trained model (leave-one-out)")
    p.add_argument("--run", required=True, help="run directory given to train --out")
    p.add_argument("--output", default="item-token", choices=["item-token", "text-id"])
    p.add_argument("--text-only", action="store_true", help="evaluate the baseline without CF embeddings")
    p.add_argument("--model-stage", type=int, default=2, choices=[1, 2], help="which training stage's model")
    p.add_argument("--task", default="sequential", choices=["sequential", "direct"])
    p.add_argument("--template", default="seen", help="seen (training template 0), unseen, or 0-9")
    p.add_argument("--stage", default="test", choices=["test", "valid"], help="which targets")
    p.add_argument("--users", type=int, default=None, help="evaluate a seeded subset of users (default: all)")
    p.add_argument("--mask-history", action="store_true", help="exclude each user's history items")
    p.add_argument("--dump-rankings", default=None, help="JSON-lines file: top-10 item ids and the gold id per user")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("run", help="the whole pipeline: WALS, both stages, baselines, evaluation, results")
    p.add_argument("--dataset", required=True)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--out", required=True)
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except (KeyError, DataFormatError, FileNotFoundError, registry.ChecksumError, RuntimeError, ValueError,
            OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {message}", file=sys.stderr)
        print(json.dumps({"error": message}))
        return 2
    print(json.dumps(result))
    return 0
