"""SASRec (Kang and McAuley, 2018): a small causal transformer over item sequences, trained on
the same leave-one-out split as everything else in this book.

The paper's main comparator. Every position of a user's training part is a training target
in one pass (the item at ``t`` predicts the item at ``t + 1``), which is why it learns far
more per example than a model that sees one target per prompt. Two losses:

- ``loss="ce"`` (default): full-softmax cross-entropy over the whole catalogue at every
  position. On these data sets it beats the original loss by a wide margin (the
  "cross-entropy instead of one negative" result).
- ``loss="bce"``: the original paper's binary loss with one sampled negative per position.

Only the training parts ``seq[:-2]`` are ever targets; the validation target ``seq[-2]``
is read for early stopping and the test target ``seq[-1]`` only by the evaluation, with the
same full-catalogue ranking rule as every other model here (:mod:`llmrec_lite.metrics`).
The code is written to be read beside the paper: one block is attention + feed-forward,
each with pre-layer-norm, dropout and a residual connection.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
import math
from pathlib import Path
import time

import numpy as np
from safetensors.torch import save_file
import torch
from torch import nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from llmrec_lite.checkpoints import load_tensors, read_json
from llmrec_lite.fileio import atomic_path, write_json
from llmrec_lite.metrics import DEFAULT_KS, evaluate_scorer
from llmrec_lite.profiles import Profile

PAD = 0  # item index i is stored as i + 1; 0 pads the left of short sequences
LOSSES = ("ce", "bce")


@dataclass
class SASRecConfig:
    """Hyper-parameters of SASRec (the published recipe's values by default).

    Attributes:
        hidden: Embedding and model width (64).
        blocks: Transformer blocks (2).
        heads: Attention heads (1).
        max_length: The last ``max_length`` items of a sequence are read (50).
        dropout: Dropout on embeddings, attention and feed-forward (0.5 for LastFM and Beauty
            in the published runs).
        lr: Adam learning rate (1e-3 on LastFM, 5e-4 on Beauty in the published runs).
        batch_size: Sequences per step (256).
        loss: ``"ce"`` (full softmax) or ``"bce"`` (one sampled negative per position).
        max_epochs: Upper bound on training epochs.
        max_positions: Upper bound on training positions over all epochs (``None``: none): the
            epoch bound becomes ``min(max_epochs, ceil(max_positions / positions per epoch))``,
            one rule that gives a small dataset many epochs and a large one few.
        patience: Stop after this many validations without a better validation HR@10.
        eval_every: Epochs between validations.
        seed: Seed of initialisation, batching and negative sampling.
        device: ``"cpu"`` or ``"cuda"``.
    """

    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    max_length: int = 50
    dropout: float = 0.5
    lr: float = 1e-3
    batch_size: int = 256
    loss: str = "ce"
    max_epochs: int = 200
    max_positions: int | None = None
    patience: int = 10
    eval_every: int = 1
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def from_profile(cls, profile: Profile, dataset: str, **overrides) -> "SASRecConfig":
        """The published recipe for ``dataset`` (lr 1e-3 on LastFM, 5e-4 elsewhere) with the
        profile's epoch budget, seed and device."""
        base = dict(lr=1e-3 if dataset == "lastfm" else 5e-4, max_epochs=profile.sasrec_max_epochs,
                    max_positions=profile.sasrec_max_positions,
                    patience=profile.sasrec_patience, seed=profile.seed,
                    device="cuda" if profile.device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
        base.update(overrides)
        return cls(**base)

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"Unknown SASRec loss {self.loss!r}; choose one of {', '.join(LOSSES)}.")
        for name in ("hidden", "blocks", "heads", "max_length", "batch_size", "max_epochs", "patience", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"Invalid SASRec setting {name}={getattr(self, name)!r}: it must be at least 1.")
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} must be a multiple of heads={self.heads}.")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"Invalid SASRec setting dropout={self.dropout!r}: it must be in [0, 1).")


class Block(nn.Module):
    """Causal self-attention, then a position-wise feed-forward network; each sub-layer adds its
    (dropped-out) output to its input and layer-normalises the sum, as the SASRec code the
    published numbers on these files come from (S3-Rec, BSARec) does."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))
        self.norm2 = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(x, x, x, attn_mask=causal, need_weights=False)
        x = self.norm1(x + self.drop(attended))
        return self.norm2(x + self.drop(self.ffn(x)))


class SASRec(nn.Module):
    """Item and position embeddings, ``blocks`` transformer blocks, scores against the item embeddings.

    Args:
        num_items: Catalogue size (item indices ``0 .. num_items - 1``).
        config: The hyper-parameters.
    """

    def __init__(self, num_items: int, config: SASRecConfig):
        super().__init__()
        self.num_items = num_items
        self.config = config
        self.items = nn.Embedding(num_items + 1, config.hidden, padding_idx=PAD)
        self.positions = nn.Embedding(config.max_length, config.hidden)
        self.norm = nn.LayerNorm(config.hidden, eps=1e-12)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config.hidden, config.heads, config.dropout) for _ in range(config.blocks))
        # small normal initialisation (std 0.02) of every weight matrix, as in the reference code
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def hidden_states(self, seqs: torch.Tensor) -> torch.Tensor:
        """``(batch, length, hidden)``: the state after each position (left-padded ``seqs`` of ``index + 1``)."""
        length = seqs.shape[1]
        if length > self.config.max_length:
            raise ValueError(f"Sequences of {length} positions, but SASRec was built for at most {self.config.max_length}.")
        # right-aligned positions: the last item is always at position max_length - 1, so a
        # batch cut to its longest sequence (less padding) is seen exactly as a full-width one
        positions = torch.arange(self.config.max_length - length, self.config.max_length, device=seqs.device).unsqueeze(0)
        x = self.drop(self.norm(self.items(seqs) + self.positions(positions)))
        # a position attends to itself and earlier, non-padding positions (a padded row
        # attends to itself only, so no row is empty)
        future = torch.triu(torch.ones(length, length, dtype=torch.bool, device=seqs.device), diagonal=1)
        blocked = future.unsqueeze(0) | (seqs == PAD).unsqueeze(1)
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=seqs.device)
        mask = blocked.repeat_interleave(self.config.heads, dim=0)
        for block in self.blocks:
            x = block(x, mask)
        return x

    def item_scores(self, states: torch.Tensor) -> torch.Tensor:
        """Scores of every catalogue item (the padding row excluded) for each state."""
        return states @ self.items.weight[1:].T

    @torch.no_grad()
    def score_histories(self, histories: list[np.ndarray]) -> torch.Tensor:
        """``(len(histories), num_items)`` scores of the next item after each history."""
        self.eval()
        device = self.items.weight.device
        width = min(self.config.max_length, max((len(h) for h in histories), default=1))
        seqs = torch.as_tensor(left_pad(histories, max(width, 1)), device=device)
        return self.item_scores(self.hidden_states(seqs)[:, -1]).float().cpu()

def left_pad(sequences: list[np.ndarray], length: int) -> np.ndarray:
    """The last ``length`` items of each sequence as ``index + 1``, left-padded with :data:`PAD`."""
    out = np.full((len(sequences), length), PAD, dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq, dtype=np.int64)[-length:] + 1
        if len(tail):
            out[row, length - len(tail):] = tail
    return out


def training_pairs(train_parts: list[np.ndarray], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and next-item targets of every training part: ``part[:-1] -> part[1:]``.

    Only items of the training parts appear (``split.train``, i.e. ``seq[:-2]``): no
    validation or test target is ever an input or a target here. Returns two left-padded
    ``(users, max_length)`` arrays of ``index + 1`` (0 where nothing is to be predicted).
    """
    parts = [p for p in train_parts if len(p) >= 2]
    inputs = left_pad([p[:-1] for p in parts], max_length)
    targets = left_pad([p[1:] for p in parts], max_length)
    return inputs, targets


def epoch_bound(config: SASRecConfig, positions_per_epoch: int) -> int:
    """Epochs a fit may run: ``max_epochs``, or fewer when ``max_positions`` is reached first."""
    if config.max_positions is None:
        return config.max_epochs
    return max(1, min(config.max_epochs, math.ceil(config.max_positions / max(positions_per_epoch, 1))))


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, window: int = 20) -> list[np.ndarray]:
    """Shuffled rows in batches of similar length (sorted inside windows of ``window`` batches),
    in shuffled batch order: short sequences are not padded to the longest in the data."""
    order = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(order), batch_size * window):
        chunk = order[start : start + batch_size * window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


@dataclass
class SASRecResult:
    """What a fit did: the validation curve, the chosen epoch and the time it took."""

    curve: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_hr10: float = 0.0
    epochs_run: int = 0
    seconds: float = 0.0
    seconds_per_epoch: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _loss(model: SASRec, inputs: torch.Tensor, targets: torch.Tensor, loss: str, generator: torch.Generator) -> torch.Tensor:
    states = model.hidden_states(inputs)
    mask = targets != PAD
    states, gold = states[mask], targets[mask] - 1
    if loss == "ce":
        return F.cross_entropy(model.item_scores(states), gold)
    # the original loss: the target against one item drawn uniformly (resampled if it hits the target)
    negatives = torch.randint(0, model.num_items, gold.shape, generator=generator).to(gold.device)
    clash = negatives == gold
    negatives[clash] = (negatives[clash] + 1) % model.num_items
    weights = model.items.weight[1:]
    pos = (states * weights[gold]).sum(-1)
    neg = (states * weights[negatives]).sum(-1)
    return F.binary_cross_entropy_with_logits(torch.cat([pos, neg]), torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]))


def fit_sasrec(split, config: SASRecConfig | None = None, show_progress: bool = True,
               valid_users: np.ndarray | None = None) -> tuple[SASRec, SASRecResult]:
    """Trains SASRec on the training parts, with early stopping on validation HR@10.

    Args:
        split: The leave-one-out split.
        config: Hyper-parameters (default: :class:`SASRecConfig`).
        valid_users: Users whose validation target decides early stopping (default: all).

    Returns:
        The model at its best validation epoch, and the training record.
    """
    config = config or SASRecConfig()
    torch.manual_seed(config.seed)
    device = torch.device(config.device)
    model = SASRec(split.num_items, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.98))
    inputs, targets = training_pairs(split.train, config.max_length)
    inputs_t, targets_t = torch.as_tensor(inputs), torch.as_tensor(targets)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    lengths = (inputs != PAD).sum(1)
    scorer = sasrec_scorer(model, split, "valid")
    result, best_state, waited = SASRecResult(), None, 0
    start = time.perf_counter()
    bar = tqdm(range(1, epoch_bound(config, int(lengths.sum())) + 1), desc="SASRec", disable=not show_progress)
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for rows in length_batches(lengths, config.batch_size, rng):
            width = int(lengths[rows].max())  # left padding: only the last ``width`` columns hold items
            rows = torch.as_tensor(rows)
            loss = _loss(model, inputs_t[rows, -width:].to(device), targets_t[rows, -width:].to(device), config.loss,
                         generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()) * len(rows), count + len(rows)
        result.epochs_run = epoch
        if epoch % config.eval_every:
            continue
        metrics, _ = evaluate_scorer(scorer, split, valid_users, targets="valid")
        result.curve.append({"epoch": epoch, "train_loss": total / max(count, 1), "valid_hr@10": metrics["hr@10"],
                             "valid_ndcg@10": metrics["ndcg@10"], "seconds": time.perf_counter() - start})
        bar.set_postfix(loss=f"{total / max(count, 1):.3f}", valid_hr10=f"{metrics['hr@10']:.4f}")
        if metrics["hr@10"] > result.best_valid_hr10 or best_state is None:
            result.best_valid_hr10, result.best_epoch, waited = metrics["hr@10"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if waited >= config.patience:
                break
    bar.close()
    result.seconds = time.perf_counter() - start
    result.seconds_per_epoch = result.seconds / max(result.epochs_run, 1)
    model.load_state_dict(best_state)
    model.eval()
    return model, result


def sasrec_scorer(model: SASRec, split, targets: str = "test"):
    """``score_fn(users)``: SASRec's scores of every item after each user's history for ``targets``
    (the shape :func:`~llmrec_lite.metrics.evaluate_scorer` and ``recommend`` take)."""
    return lambda users: model.score_histories([split.history(int(u), targets) for u in users])


def evaluate_sasrec(model: SASRec, split, users=None, targets: str = "test", ks=DEFAULT_KS) -> dict:
    """HR/NDCG of SASRec under the book's rule (full ranking; unmasked and ``_masked``)."""
    return evaluate_scorer(sasrec_scorer(model, split, targets), split, users, targets, ks, batch_size=512)[0]


def save_sasrec(model: SASRec, record: SASRecResult, folder) -> None:
    """Writes ``sasrec.safetensors`` and ``sasrec.json`` (config, item count, training record) atomically."""
    folder = Path(folder)
    with atomic_path(folder / "sasrec.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    write_json(folder / "sasrec.json", {"config": asdict(model.config), "num_items": model.num_items,
                                        "record": record.to_dict()})


def load_sasrec(folder) -> tuple[SASRec, SASRecResult]:
    """Reads what :func:`save_sasrec` wrote."""
    folder = Path(folder)
    info = read_json(folder / "sasrec.json")
    model = SASRec(info["num_items"], SASRecConfig(**info["config"]))
    model.load_state_dict(load_tensors(folder / "sasrec.safetensors", f"Delete {folder} to train SASRec again."))
    model.eval()
    return model, SASRecResult(**info["record"])
