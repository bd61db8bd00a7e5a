"""The hyper-parameters of one training stage, built from a profile.

:class:`TrainSettings` is what the training loop (:func:`llmrec_lite.train.fit`) and the
batching (:mod:`llmrec_lite.batching`) read, and what a run writes into each stage's
``config.json``. Its defaults are :class:`~llmrec_lite.profiles.Profile`'s, and
:meth:`TrainSettings.from_profile` is the one place a profile becomes stage settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from llmrec_lite.device import resolve_bf16
from llmrec_lite.profiles import Profile
from llmrec_lite.templates import TASKS
from llmrec_lite.variants import OUTPUTS, Variant, check_stage

USER_VECTORS = ("fitted", "prefix")  # see TrainSettings.user_vectors
ITEM_LOGITS = ("dot", "cosine")  # see TrainSettings.item_logit

# TrainSettings fields a profile names differently (every other shared field has the same name)
PROFILE_NAMES = {"bf16": "train_bf16"}


def check_item_logit(item_logit: str, logit_temperature: float, dense_weight: float) -> None:
    """Refuses item-token head settings that cannot train, naming the fix."""
    if item_logit not in ITEM_LOGITS:
        raise ValueError(f"Unknown item_logit {item_logit!r}; choose one of {ITEM_LOGITS}.")
    if not logit_temperature > 0:
        raise ValueError(f"logit_temperature={logit_temperature!r}: the temperature of cosine logits must be positive.")
    if not 0 <= dense_weight < 1:
        raise ValueError(f"dense_weight={dense_weight!r}: it is the dense loss's share, in [0, 1) "
                         "(the answer position must keep some weight).")


@dataclass
class TrainSettings:
    """Hyper-parameters of one training stage (written into the run's config.json).

    Attributes:
        stage: 1 (projectors only) or 2 (projectors + LoRA).
        output: ``"item-token"`` or ``"text-id"``.
        use_embeddings: ``False`` trains the text-only baseline.
        samples_per_task: Training prompts drawn per task per epoch (``None``: all prefixes
            times ``sample_ratio``).
        sample_ratio: Share of all training prefixes used when ``samples_per_task`` is ``None``
            (OpenP5 samples 20 %).
        epochs, batch_size, grad_accum, lr, weight_decay, warmup_ratio, max_grad_norm: the
            optimisation (AdamW, linear warm-up, cosine decay).
        bf16: bfloat16 autocast (CPU) or mixed precision (GPU); ``"auto"`` is resolved on creation
            (:func:`llmrec_lite.device.resolve_bf16`: float32 on CPUs without native bfloat16).
        val_users: Size of the fixed validation subset (validation targets, template 0).
        eval_every, checkpoint_every: In optimizer steps.
        bucket_size: Prompts sorted by length within windows of this many batches, so a
            batch wastes little compute on padding.
        max_history: History items per sequential prompt.
        tasks: Tasks whose batches alternate (both by default).
        logit_scale_lr: Learning rate of the item-token logit scale (its own parameter group:
            Adam moves a parameter by about one learning rate per step, and the log-scale
            needs to travel a few units, not a few thousandths).
        lora_lr, projector_lr: Learning rates of the LoRA adapters and of the projectors (and
            free item embeddings); ``None``: ``lr``.
        item_logit, logit_temperature: Item-token logits, ``"dot"`` or ``"cosine"`` (initial
            temperature ``logit_temperature``); see :class:`~llmrec_lite.fusion.FusionModel`.
        dense_weight: Share of the item-token loss from dense next-item supervision.
        history_bias: A learned offset on the scores of the items the prompt shows (item-token side).
        history_bias_lr: Its learning rate (own group, no decay): the offset must travel several
            logit units in a few hundred steps. The known-items offset and the CF weight share it.
        known_bias: A second learned offset on the scores of every item the user consumed
            before the target, shown or not (item-token side; answer positions).
        cf_term: Item-token scores add a learned multiple of the WALS score of the prompt's user
            (see :class:`~llmrec_lite.fusion.FusionModel`); its rate is ``history_bias_lr``.
        readout: A learned linear map (from the identity) between the last hidden state and the
            item vectors (item-token side).
        user_vectors: The user's CF vector in training prompts: ``"fitted"`` (the WALS fit's,
            solved from every training item, the prompt's answer included) or ``"prefix"``
            (folded in from the items before the prompt's target, as a test user's is).
            It sets training prompts only. The training loop's validation prompts read the
            fitted vector, as do the records that chose settings on validation targets; the
            user-vector record is the exception, since it scored one model both ways. The
            results' test prompts, their WALS row and ``recommend`` read the profile's
            ``eval_user_vectors`` instead (:meth:`~llmrec_lite.runs.Run.eval_user_factors`):
            folded in from every item before the test target under the cpu profile, so a
            test prompt does not read the fitted vector there.
        seed: Seed of sampling, batching, dropout and initialisation.
    """

    # defaults: the profiles' (written once, in llmrec_lite.profiles.Profile)
    stage: int = 1
    output: str = "item-token"
    use_embeddings: bool = True
    samples_per_task: int | None = Profile.item_token_samples[0]
    sample_ratio: float = Profile.sample_ratio
    epochs: int = Profile.epochs
    batch_size: int = Profile.batch_size
    grad_accum: int = 1
    lr: float = Profile.lr
    weight_decay: float = Profile.weight_decay
    warmup_ratio: float = Profile.warmup_ratio
    max_grad_norm: float = 1.0
    bf16: bool | str = Profile.train_bf16
    val_users: int = Profile.val_users
    eval_every: int = Profile.eval_every
    checkpoint_every: int = Profile.checkpoint_every
    bucket_size: int = 20
    max_history: int = Profile.max_history
    tasks: tuple[str, ...] = TASKS
    logit_scale_lr: float = 0.05
    lora_lr: float | None = Profile.lora_lr
    projector_lr: float | None = Profile.projector_lr
    item_logit: str = Profile.item_logit
    logit_temperature: float = Profile.logit_temperature
    dense_weight: float = Profile.dense_weight
    history_bias: bool = Profile.history_bias
    history_bias_lr: float = 0.5
    readout: bool = Profile.readout
    cf_term: bool = Profile.cf_term
    known_bias: bool = Profile.known_bias
    user_vectors: str = Profile.user_vectors
    seed: int = Profile.seed

    def __post_init__(self):
        check_stage(self.stage)
        if self.output not in OUTPUTS:
            raise ValueError(f"Unknown output side {self.output!r}; choose item-token or text-id.")
        for field, minimum in (("batch_size", 1), ("epochs", 1), ("grad_accum", 1), ("val_users", 1),
                               ("eval_every", 1), ("checkpoint_every", 1), ("bucket_size", 1), ("max_history", 1)):
            value = getattr(self, field)
            if value is not None and value < minimum:
                raise ValueError(f"Invalid training setting {field}={value!r}: it must be at least {minimum}.")
        if self.samples_per_task is not None and self.samples_per_task < 1:
            raise ValueError(f"Invalid training setting samples_per_task={self.samples_per_task!r}: a stage needs "
                             "at least 1 prompt per task (an untrained model is no result).")
        if not 0 < self.sample_ratio <= 1:
            raise ValueError(f"Invalid training setting sample_ratio={self.sample_ratio!r}: it must be in (0, 1].")
        for field in ("lr", "lora_lr", "projector_lr", "logit_scale_lr", "history_bias_lr"):
            value = getattr(self, field)
            if value is not None and not value > 0:
                raise ValueError(f"Invalid training setting {field}={value!r}: it must be positive.")
        check_item_logit(self.item_logit, self.logit_temperature, self.dense_weight)
        if self.user_vectors not in USER_VECTORS:
            raise ValueError(f"Invalid training setting user_vectors={self.user_vectors!r}: choose one of "
                             f"{', '.join(USER_VECTORS)}.")
        if self.stage == 1:
            # stage 1 trains no LoRA, so its rate is moot: recorded as None, two stage-1 runs
            # that differ only there are the same run (and a finished one is reused)
            self.lora_lr = None
        # "auto" becomes what this machine runs, so a run's config records its real precision
        # (from_profile resolves it for the profile's device first; here "auto" means any device)
        self.bf16 = resolve_bf16(self.bf16)
        self.tasks = tuple(self.tasks)
        if not self.tasks or set(self.tasks) - set(TASKS):
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks!r}.")

    @classmethod
    def from_profile(cls, profile: Profile, stage: int, variant: Variant | str = Variant(), **overrides) -> "TrainSettings":
        """The settings of one stage of one variant under a profile; ``overrides`` replace single fields.

        The text-only text-id baseline has nothing to train in stage 1 (no projectors, no
        free embeddings), so its stage 2 gets both stages' prompts: every variant spends the
        same total budget.
        """
        variant = Variant.parse(variant)
        check_stage(stage)
        budget = profile.item_token_samples if variant.output == "item-token" else profile.text_id_samples
        samples, ratio = budget[stage - 1], profile.sample_ratio
        if variant.output == "text-id" and not variant.use_embeddings and stage == 2:
            if None not in budget:
                samples = budget[0] + budget[1]
            elif samples is None:  # counts from the share of training prefixes: twice the share
                ratio = min(1.0, 2 * profile.sample_ratio)
        # every setting the profile has, under its own name or the one PROFILE_NAMES gives
        base = {f.name: getattr(profile, PROFILE_NAMES.get(f.name, f.name)) for f in fields(cls)
                if hasattr(profile, PROFILE_NAMES.get(f.name, f.name))}
        base.update(stage=stage, output=variant.output, use_embeddings=variant.use_embeddings,
                    samples_per_task=samples, sample_ratio=ratio, bf16=resolve_bf16(profile.train_bf16, profile.device))
        base.update(overrides)
        return cls(**base)

    @property
    def variant(self) -> Variant:
        return Variant(self.output, self.use_embeddings)

    def total_steps(self, num_train_samples: int) -> int:
        """Optimizer steps this stage takes on a split with ``num_train_samples`` training prefixes."""
        return training_steps(self, num_train_samples)


def prompts_per_task(settings: TrainSettings, num_train_samples: int) -> int:
    """Training prompts per task and epoch: the settings' count, or ``sample_ratio`` of all
    training prefixes when the count is ``None`` (OpenP5 samples 20 %)."""
    if settings.samples_per_task is not None:
        return int(min(settings.samples_per_task, num_train_samples))
    return max(1, int(settings.sample_ratio * num_train_samples))


def training_steps(settings: TrainSettings, num_train_samples: int, num_processes: int = 1) -> int:
    """Optimizer steps of a stage: tasks x batches per task, per epoch, over gradient accumulation
    (and over processes: with ``accelerate launch`` each step takes one batch per process).

    Args:
        settings: The stage's :class:`TrainSettings`.
        num_train_samples: Training prefixes of the split (``split.num_train_samples``).
        num_processes: Processes training together.
    """
    per_task = math.ceil(prompts_per_task(settings, num_train_samples) / settings.batch_size)
    per_process = math.ceil(len(settings.tasks) * per_task / num_processes)
    return math.ceil(per_process / settings.grad_accum) * settings.epochs


def stage_budget(profile, variant: Variant | str, stage: int, num_train_samples: int) -> dict:
    """Training prompts and optimizer steps of one stage under a profile.

    Args:
        profile: A :class:`~llmrec_lite.profiles.Profile` (``get_profile("gpu")`` is OpenP5's recipe).
        variant, stage: Which model and stage.
        num_train_samples: Training prefixes of the split (``split.num_train_samples``).

    Returns:
        ``{"prompts": ..., "steps": ...}``: prompts over all tasks and epochs, and the steps
        :func:`training_steps` counts for them.
    """
    settings = TrainSettings.from_profile(profile, stage, variant)
    prompts = prompts_per_task(settings, num_train_samples) * len(settings.tasks) * settings.epochs
    return {"prompts": prompts, "steps": training_steps(settings, num_train_samples)}
