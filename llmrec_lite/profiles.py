"""Run profiles: every hyper-parameter of the book and the command line, in one place.

- ``cpu``: what the book build runs on a 2-core laptop (SmolLM2-135M backbone later on).
- ``gpu``: paper-scale settings for one GPU (OpenLLaMA-3B in 4-bit later on).
- ``smoke``: a few seconds per chapter, for the test-suite.

A chapter's parameters cell names a profile; everything else is read from here and
written into each run's configuration, so a result always carries its settings.

Configuration flows down: a :class:`Profile` is plain data and this module imports none
of the modules that use it. Each settings class builds itself from a profile
(:meth:`llmrec_lite.wals.WALSConfig.from_profile`,
:meth:`llmrec_lite.backbone.BackboneSettings.from_profile`,
:meth:`llmrec_lite.settings.TrainSettings.from_profile`) and takes its own defaults from
:class:`Profile`'s, so every default is written once, here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """Settings shared by the chapters and the command line.

    Attributes:
        name: Profile name.
        datasets: Datasets the chapters show (the first is the main one).
        results_datasets: Datasets the whole pipeline (training, baselines, evaluation) runs on.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        seed: Global seed.
        indexing: Item indexing (``"sequential"`` or ``"random"``).
        wals_factors: WALS embedding dimension.
        wals_regularization: WALS L2 weight ``λ``.
        wals_alpha: Confidence slope (``c = 1 + alpha * r``).
        wals_iterations: WALS sweeps.
        wals_cg_steps: CG steps per half-step.
        compare_iterations: Iterations of the solver comparison in the WALS chapter.
        backbone: Backbone kind: ``"cpu"`` (SmolLM2-135M), ``"gpu"`` (OpenLLaMA-3B, 4-bit)
            or ``"tiny"`` (random, for tests).
        bf16: bfloat16 compute (gpu) or autocast (cpu).
        projector_hidden: Width of the projectors' middle layer.
        projector_activation: Their activation.
        lora_r, lora_alpha, lora_dropout, lora_targets: LoRA adapters (OpenP5's Llama recipe:
            r=8, alpha=16, dropout 0.05 on q_proj and v_proj).
        max_history: History items shown in a sequential prompt (the last ones).
        batch_size, lr, weight_decay, warmup_ratio, epochs: optimisation of both stages.
        train_bf16: bfloat16 autocast during training: ``True``, ``False`` or ``"auto"`` (on CUDA
            and on CPUs with native bfloat16; an AVX2-only CPU emulates it tens of times
            slower than float32, so it trains in float32 there). Evaluation follows training.
        item_token_samples: Training prompts per task for (stage 1, stage 2), item-token side.
        text_id_samples: The same for the text-id side.
        sample_ratio: Used instead of the sample counts when they are ``None`` (OpenP5: 20 %).
        val_users, eval_every, checkpoint_every: validation subset and intervals (steps).
        eval_users: Test users evaluated for item-token models and the classic baselines: all of
            them up to this many, else one seeded subset of this size shared by every row
            (``None``: all).
        text_id_eval_users: Test users for text-id models (beam search is the slow part).
        eval_batch_size: Prompts per forward pass when item-token models rank the catalogue
            (a speed setting: scores move by rounding only; ``benchmarks/speed.py`` sweeps it).
        explorer_items: Items the embedding explorer lays out (the most popular; ``None``: all).
        explorer_tokens: Token embeddings sampled for context in the explorer.
        umap_epochs: UMAP optimisation epochs (``None``: umap-learn's default).
        sasrec_max_epochs, sasrec_patience: SASRec's epoch bound and early-stopping patience
            (validation HR@10 checked every epoch); its other settings are the published recipe's.
        sasrec_max_positions: SASRec's bound on training positions over all epochs (``None``:
            none); the cpu profile's 1.6M gives LastFM about 65 epochs and Beauty 13.
        item_logit: Item-token logits, ``"dot"`` (learned scale) or ``"cosine"`` (over a learned
            temperature starting at ``logit_temperature``).
        dense_weight: Share of the item-token loss from dense next-item supervision (every
            history position predicts the item after it); ``0``: the answer position only.
        history_bias: Item-token scores get one learned offset for the items the prompt's
            history shows (the model reads its prompt; ranking with history masked is unchanged).
        known_bias: Item-token scores get a second learned offset for every item the user
            consumed before the target, shown or not (answer positions; ranking with history
            masked is unchanged).
        readout: Item-token scores read the last hidden state through a learned linear map that
            starts as the identity.
        lora_lr, projector_lr: Learning rates of the LoRA adapters and of the projectors (and
            free item embeddings); ``None``: ``lr``.
        evaluation_grid: ``"full"``: every LLM row of the results table on every dataset, each
            final model on both tasks and both templates. ``"lean"`` (the cpu profile's budget):
            the text-id side only as its stage-2 row with CF embeddings, sequential task, seen
            template, on the first results dataset; the item-token rows everywhere, with the
            full task/template grid on the first results dataset only.
        cf_term: Item-token scores add a learned multiple of the WALS score ``<u, v_j>`` of the
            user vector the prompt reads (answer position only).
        user_vectors: The user's CF vector in training prompts: ``"fitted"`` (WALS's, which has
            seen the prompt's answer) or ``"prefix"`` (folded in from the items before it).
        eval_user_vectors: The user vectors the results' test prompts, WALS row and late fusion
            read: ``"fitted"`` (solved from the training part, which ends before the validation
            item a test prompt shows) or ``"folded"`` (folded in from every item before the test
            target, :func:`llmrec_lite.wals.history_user_factors`). It never changes training.
        cf_weight: Late fusion (:mod:`llmrec_lite.late_fusion`): the results add a row where the
            stage-2 item-token scores are re-ranked with this share of the WALS score
            (standardised per user); ``0``: no such row. It never changes training.
    """

    name: str
    datasets: tuple[str, ...] = ("lastfm", "beauty")
    results_datasets: tuple[str, ...] = ("lastfm",)
    device: str = "cpu"
    seed: int = 0
    indexing: str = "sequential"
    wals_factors: int = 64
    wals_regularization: float = 0.05
    wals_alpha: float = 10.0
    wals_iterations: int = 15
    wals_cg_steps: int = 3
    compare_iterations: int = 15
    backbone: str = "cpu"
    bf16: bool = False
    projector_hidden: int = 1024
    projector_activation: str = "gelu"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    max_history: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    epochs: int = 1
    train_bf16: bool | str = "auto"
    item_token_samples: tuple[int | None, int | None] = (800, 1600)
    text_id_samples: tuple[int | None, int | None] = (400, 400)
    sample_ratio: float = 0.2
    val_users: int = 200
    eval_users: int | None = None
    text_id_eval_users: int | None = 100
    eval_batch_size: int = 32
    eval_every: int = 50
    checkpoint_every: int = 25
    explorer_items: int | None = 1500
    explorer_tokens: int = 2000
    umap_epochs: int | None = 200
    sasrec_max_epochs: int = 200
    sasrec_patience: int = 20
    sasrec_max_positions: int | None = None
    item_logit: str = "dot"
    logit_temperature: float = 0.07
    dense_weight: float = 0.0
    history_bias: bool = False
    readout: bool = False
    lora_lr: float | None = None
    projector_lr: float | None = None
    evaluation_grid: str = "full"
    cf_term: bool = False
    known_bias: bool = False
    user_vectors: str = "fitted"
    eval_user_vectors: str = "fitted"
    cf_weight: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The linear layers of a Llama block: attention's four projections and the MLP's three.
EVERY_LINEAR_LAYER = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# The item-token head of the cpu and gpu profiles (lab/DECISIONS.md: tuning record); the
# smoke profile keeps the plain defaults (dot logits, answer position only).
CHOSEN_HEAD = {"item_logit": "cosine", "logit_temperature": 0.07, "dense_weight": 0.5, "history_bias": True}

PROFILES: dict[str, Profile] = {
    # The book build on a 2-core CPU. Each value that differs from Profile's defaults has a row
    # in lab/DECISIONS.md: the record that chose it (validation targets only) or the budget it fits.
    "cpu": Profile(name="cpu", datasets=("lastfm", "beauty"), results_datasets=("lastfm", "beauty"), device="cpu",
                   backbone="cpu", evaluation_grid="lean", item_token_samples=(1200, 800), lora_lr=1e-3,
                   text_id_samples=(200, 200), val_users=100, sasrec_max_positions=1_600_000, cf_weight=0.0,
                   user_vectors="prefix", cf_term=True, known_bias=True, eval_user_vectors="folded",
                   lora_targets=EVERY_LINEAR_LAYER, lora_dropout=0.0, **CHOSEN_HEAD),
    # Paper scale on one GPU: OpenP5's Llama recipe (20 % of the rendered training prompts, lr 1e-3,
    # 2 epochs per stage), OpenLLaMA-3B in 4-bit; the head of the cpu records, with fitted user
    # vectors and no late fusion (those records were made with the cpu backbone).
    "gpu": Profile(name="gpu", datasets=("lastfm", "beauty", "ml1m"), results_datasets=("lastfm", "beauty", "ml1m"),
                   device="auto", backbone="gpu", bf16=True,
                   item_token_samples=(None, None), text_id_samples=(None, None), epochs=2, val_users=500,
                   text_id_eval_users=None, explorer_items=None, explorer_tokens=5000, umap_epochs=None,
                   eval_every=200, checkpoint_every=200, **CHOSEN_HEAD),
    "smoke": Profile(
        name="smoke",
        datasets=("lastfm",),
        device="cpu",
        wals_factors=16,
        wals_iterations=3,
        compare_iterations=3,
        backbone="tiny",
        projector_hidden=32,
        batch_size=4,
        item_token_samples=(16, 16),
        text_id_samples=(8, 8),
        val_users=8,
        eval_users=24,
        text_id_eval_users=8,
        explorer_items=120,
        explorer_tokens=120,
        umap_epochs=30,
        sasrec_max_epochs=3,
        sasrec_patience=2,
        eval_every=2,
        checkpoint_every=2,
        train_bf16=False,
        cf_weight=0.5,  # exercises the late-fusion row in the tests (a setting, not a choice)
    ),
}


def get_profile(name: str) -> Profile:
    """Looks a profile up by name.

    Raises:
        KeyError: unknown profile; the message lists the known ones.
    """
    if name not in PROFILES:
        raise KeyError(f"Unknown profile {name!r}. Known profiles: {', '.join(PROFILES)}.")
    return PROFILES[name]
