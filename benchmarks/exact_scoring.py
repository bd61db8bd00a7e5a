"""Record: exact scoring of every catalogue item for a text-id model, walked over the trie
against the readable one-answer-per-item reference, on the cpu profile's backbone.

The model's projectors are random (speed and agreement do not depend on training); both
functions score the same prompts in the same process, so the ratio is like for like.

    python benchmarks/exact_scoring.py --dataset lastfm --users 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from llmrec_lite.backbone import load_backbone
from llmrec_lite.data import load_dataset
from llmrec_lite.device import describe_machine
from llmrec_lite.evaluate import evaluation_users
from llmrec_lite.fileio import write_json
from llmrec_lite.fusion import FusionModel
from llmrec_lite.generation import ItemTrie, exact_item_scores, sequence_item_scores
from llmrec_lite.prompts import PromptEncoder
from llmrec_lite.split import LeaveOneOutSplit
from llmrec_lite.templates import get_template


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="lastfm")
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    split = LeaveOneOutSplit.from_data(load_dataset(args.dataset))
    backbone = load_backbone("cpu")
    gen = torch.Generator().manual_seed(0)
    model = FusionModel(backbone, torch.randn(split.num_users, 64, generator=gen) * 0.1,
                        torch.randn(split.num_items, 64, generator=gen) * 0.1, output="text-id").eval()
    encoder = PromptEncoder.for_backbone(split, backbone)
    trie = ItemTrie.from_catalogue(split.data, backbone.tokenizer)
    users = evaluation_users(split, args.users, seed=0)
    batch = encoder.batch(get_template("sequential", "seen"), users)
    timed = {}
    for name, fn in (("trie_walk", exact_item_scores), ("one_answer_per_item", sequence_item_scores)):
        start = time.perf_counter()
        scores = fn(model, batch, trie)
        timed[name] = {"seconds_per_user": (time.perf_counter() - start) / len(users), "scores": scores}
    a, b = timed["trie_walk"]["scores"], timed["one_answer_per_item"]["scores"]
    inner = int((trie.leaf_item < 0).sum())
    result = {"benchmark": "exact_scoring", "dataset": args.dataset, "users": len(users), "items": split.num_items,
              "trie_nodes": int(len(trie.leaf_item)), "inner_nodes": inner,
              "answer_tokens": int(sum(len(s) for s in trie.sequences)),
              "seconds_per_user": {k: v["seconds_per_user"] for k, v in timed.items()},
              "speedup": timed["one_answer_per_item"]["seconds_per_user"] / timed["trie_walk"]["seconds_per_user"],
              "max_abs_difference": float((a - b).abs().max()),
              "same_top10": bool(np.array_equal(a.topk(10).indices.numpy(), b.topk(10).indices.numpy())),
              "machine": describe_machine(), "date": datetime.date.today().isoformat()}
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"exact_scoring_{args.dataset}_cpu.json"
    write_json(out, result)
    print(json.dumps({k: result[k] for k in ("seconds_per_user", "speedup", "max_abs_difference", "same_top10")}
                     | {"out": str(out)}))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
