"""Benchmark: batched trie-constrained beam search against Hugging Face `generate` with
`prefix_allowed_tokens_fn` (OpenP5's way), same model, same users, same 10 beams.

Both rank by the summed log-probability of the answer (`length_penalty=0`). The script
checks that the two give identical top-10 lists, then reports users per second of each,
measured in the same process, and writes JSON with the machine named.

    python benchmarks/eval.py --profile cpu --dataset lastfm --users 32 [--run DIR]

Without --run the text-id model is freshly initialised (calibrated projectors, identity LoRA):
speed and agreement do not depend on training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from llmrec_lite.device import describe_machine
from llmrec_lite.evaluate import evaluation_users
from llmrec_lite.fileio import write_json
from llmrec_lite.fusion import FusionModel
from llmrec_lite.generation import ItemTrie, constrained_beam_search
from llmrec_lite.profiles import get_profile
from llmrec_lite.prompts import collate
from llmrec_lite.runs import Run, projector_overrides
from llmrec_lite.templates import get_template


def hf_generate_top(model, batch, trie: ItemTrie, num_beams: int) -> list[list[int]]:
    """OpenP5-style ranking: HF beam search with a per-beam Python callback over the trie."""
    children = {}
    for node in range(trie.child_tokens.shape[0]):
        toks = trie.child_tokens[node]
        children[node] = {int(t): int(n) for t, n in zip(toks.tolist(), trie.child_nodes[node].tolist()) if t >= 0}
    leaf = trie.leaf_item.tolist()
    eos = trie.sequences[0][-1]

    def allowed(batch_id, generated):
        node = 0
        for token in generated.tolist():
            node = children.get(node, {}).get(int(token))
            if node is None:
                return [eos]
        nxt = list(children.get(node, {}))
        return nxt or [eos]

    out = model.model.generate(
        inputs_embeds=model.input_embeddings(batch), attention_mask=batch.attention_mask,
        num_beams=num_beams, num_return_sequences=num_beams, max_new_tokens=trie.depth,
        prefix_allowed_tokens_fn=allowed, length_penalty=0.0, early_stopping=True, do_sample=False,
        pad_token_id=model.backbone.tokenizer.pad_token_id, eos_token_id=eos,
    )
    tops = []
    for row in range(batch.input_ids.shape[0]):
        items = []
        for seq in out[row * num_beams : (row + 1) * num_beams].tolist():
            node = 0
            for token in seq:
                node = children.get(node, {}).get(int(token), node)
                if leaf[node] >= 0:
                    break
            items.append(leaf[node])
        tops.append(items)
    return tops


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--dataset", default="lastfm")
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--beams", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16, help="users per batch of the batched search")
    parser.add_argument("--hf-batch", type=int, default=2, help="users per HF generate call (OpenP5 uses small batches)")
    parser.add_argument("--run", default=None, help="run directory with a trained text-id stage-2 model")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    profile = get_profile(args.profile)
    folder = Path(args.run) if args.run else Path("/tmp") / f"llmrec-bench-{args.profile}-{args.dataset}"
    run = Run.open(profile, args.dataset, folder, show_progress=False)
    if args.run:
        trained = run.load("text-id", 2)
        model, encoder = trained.model, trained.encoder  # prompted as in its training
    else:
        model = FusionModel(run.backbone, run.wals.user_factors, run.wals.item_factors, output="text-id",
                            projector_config=projector_overrides(profile)).eval()
        encoder = run.encoder()
    tok = run.backbone.tokenizer
    trie = ItemTrie.from_catalogue(run.data, tok)
    users = evaluation_users(run.split, args.users, seed=profile.seed)
    template = get_template("sequential", "seen")
    encoded = [encoder.for_user(template, int(u)) for u in users]

    def batches(size):
        return [collate(encoded[i : i + size], tok.pad_token_id, with_response=False) for i in range(0, len(encoded), size)]

    with torch.no_grad():
        constrained_beam_search(model, batches(args.batch)[0], trie, args.beams)  # warm-up
        start = time.perf_counter()
        ours = [row for b in batches(args.batch) for row in constrained_beam_search(model, b, trie, args.beams)[0].tolist()]
        ours_seconds = time.perf_counter() - start
        start = time.perf_counter()
        theirs = [row for b in batches(args.hf_batch) for row in hf_generate_top(model, b, trie, args.beams)]
        hf_seconds = time.perf_counter() - start
    identical = sum(a == b for a, b in zip(ours, theirs))
    result = {
        "benchmark": "eval",
        "dataset": args.dataset,
        "profile": args.profile,
        "backbone": run.backbone.source,
        "trained_model": bool(args.run),
        "users": len(users),
        "num_beams": args.beams,
        "batched_search": {"batch": args.batch, "seconds": ours_seconds, "users_per_second": len(users) / ours_seconds},
        "hf_generate_prefix_allowed_tokens_fn": {"batch": args.hf_batch, "seconds": hf_seconds,
                                                 "users_per_second": len(users) / hf_seconds},
        "speedup": hf_seconds / ours_seconds,
        "identical_top10_lists": identical,
        "all_identical": identical == len(users),
        "machine": describe_machine(),
    }
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"eval_{args.dataset}_{args.profile}.json"
    write_json(out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"} | {"out": str(out)}))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
