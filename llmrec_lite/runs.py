"""The run layer: one run directory, what it was made from, and the models trained in it.

A run directory holds everything needed to resume, evaluate or serve a model::

    OUT/wals/                             factors and their fingerprint (fitted once, reused)
    OUT/<variant>/stage<k>/config.json    everything that determines the stage's result
    OUT/<variant>/stage<k>/log.jsonl      one JSON object per step / validation
    OUT/<variant>/stage<k>/checkpoint/    latest resumable state
    OUT/<variant>/stage<k>/final/         projectors/, adapter/, extra.safetensors, result.json
    OUT/<variant>/.stage<k>.lock          held while the stage trains (two trainings never share one)
    OUT/eval/                             one JSON per cached evaluation (:func:`evaluate_cached`)
    OUT/sasrec/                           the SASRec baseline: sasrec.json, its weights
    OUT/results.json, OUT/results.md      the results table (:func:`llmrec_lite.pipeline.run_pipeline`)

``<variant>`` is a :class:`~llmrec_lite.variants.Variant`'s folder name (``item-token``,
``item-token-text``, ``text-id``, ``text-id-text``). :class:`Run` owns that layout: it
loads the data, fits or reloads the WALS factors, loads the backbone, builds each stage's
settings from the profile, hands models and batches to the training loop
(:func:`llmrec_lite.train.fit`), and loads a trained model back *with the settings it was
trained with* (:meth:`Run.load`), refusing one that does not match the run's data, factors
or backbone. :func:`evaluate_cached` evaluates a trained stage on the profile's test users
once and keeps the result in ``OUT/eval``, keyed by the trained model's fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
import contextlib
from dataclasses import asdict, dataclass
import hashlib
import json
import os
from pathlib import Path
import shutil
import socket
from types import SimpleNamespace

try:  # POSIX; elsewhere two trainings into one folder are not detected
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

import numpy as np
import torch

from llmrec_lite import registry
from llmrec_lite.backbone import BackboneSettings, load_backbone
from llmrec_lite.batching import epoch_batches, validation_batches
from llmrec_lite.checkpoints import CheckpointMismatchError, check_matches, load_final_into, read_json, save_final
from llmrec_lite.data import load_dataset
from llmrec_lite.device import resolve_device
from llmrec_lite.evaluate import Evaluation, evaluate_model, evaluation_users
from llmrec_lite.fileio import write_json
from llmrec_lite.fusion import FusionModel
from llmrec_lite.profiles import get_profile
from llmrec_lite.prompts import PromptEncoder
from llmrec_lite.recommend import recommend
from llmrec_lite.results.rows import evaluation_size
from llmrec_lite.settings import TrainSettings
from llmrec_lite.split import LeaveOneOutSplit
from llmrec_lite.train import fit, process_state, read_log_file, summarize
from llmrec_lite.variants import Variant, check_stage
from llmrec_lite.wals import WALS, WALSConfig, user_vectors


class FinishedWorkError(FileExistsError):
    """A command would replace finished work; the message names the flag that allows it."""


class StageBusyError(RuntimeError):
    """Another process is training the same stage into the same run directory."""


@contextlib.contextmanager
def stage_lock(folder: Path) -> Iterator[None]:
    """Holds an exclusive lock on a stage folder while it trains (a file beside it, released by
    the operating system when the process ends, however it ends).

    Raises:
        StageBusyError: another process holds the lock: its checkpoint is work in progress, not
            an interrupted stage to overwrite.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = folder.parent / f".{folder.name}.lock"
    with open(lock, "a+") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise StageBusyError(
                    f"{folder} is being trained right now by {holder}. Wait for it to finish, or stop that process "
                    "first (its checkpoint stays; --resume continues it). Do not pass --overwrite while it runs: "
                    "that would delete its work.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class Trained:
    """A trained fusion model with everything needed to use it as it was trained.

    Attributes:
        model: The :class:`~llmrec_lite.fusion.FusionModel` (in eval mode).
        settings: Its stage's :class:`~llmrec_lite.train.TrainSettings`.
        encoder: The :class:`~llmrec_lite.prompts.PromptEncoder` its training used.
        stage: Training stage (1 or 2).
        user_vectors: ``user_vectors(targets)`` gives the user vectors its prompts read for
            ``targets`` (``None``: the fitted ones); :meth:`Run.load` passes the run's
            :meth:`Run.eval_user_factors`, so ``recommend`` ranks as the results do.
    """

    model: object
    settings: TrainSettings
    encoder: PromptEncoder
    stage: int
    user_vectors: Callable[[str], torch.Tensor | None] | None = None

    @property
    def variant(self) -> Variant:
        return self.settings.variant

    def recommend(self, users, k: int = 10, exclude_seen: bool = True, **kwargs):
        """Top-``k`` item ids per user (see :func:`llmrec_lite.recommend.recommend`)."""
        return recommend(self, users, k=k, exclude_seen=exclude_seen, **kwargs)


def projector_overrides(profile) -> dict:
    """The profile's projector width and activation (the rest of the configuration comes from
    the factors and the backbone)."""
    return {"hidden_dim": profile.projector_hidden, "activation": profile.projector_activation}


class Run:
    """A run directory for one dataset under one profile (build it with :meth:`open`).

    Attributes:
        out: The run directory.
        profile: The :class:`~llmrec_lite.profiles.Profile` new stages are configured from.
        data, split: The dataset and its leave-one-out split.
        wals: The fitted :class:`~llmrec_lite.wals.WALS` model (factors of this run).
        backbone: The loaded :class:`~llmrec_lite.backbone.Backbone`.
        steps_back: ``0`` for the real split; ``k`` for a run on every user's sequence less
            its last ``k`` items (:meth:`~llmrec_lite.split.LeaveOneOutSplit.earlier`), whose
            factors and models never see those items. With ``k = 1`` the run's test target
            is the real validation target, as far from its training as the real test target
            is from the real training: the tuning record scores settings there.
    """

    def __init__(self, out, profile, data, split, wals, backbone, steps_back: int = 0):
        self.out = Path(out)
        self.profile = profile
        self.data = data
        self.split = split
        self.wals = wals
        self.backbone = backbone
        self.steps_back = int(steps_back)
        self._eval_vectors: dict[tuple[str, str], torch.Tensor | None] = {}  # (way, targets) -> vectors

    # ----------------------------------------------------------------------- evaluation vectors

    def eval_user_factors(self, targets: str = "test") -> torch.Tensor | None:
        """The user vectors prompts for ``targets`` read under the profile's ``eval_user_vectors``:
        ``None`` for the fitted ones (the model's own), else every user's vector folded in from
        the whole history before the target (computed once per run and targets). The results'
        test prompts and :meth:`load`'s models (``recommend``) read the same vectors.

        Raises:
            ValueError: An unknown ``eval_user_vectors`` or ``targets``.
        """
        key = (self.profile.eval_user_vectors, targets)
        if key not in self._eval_vectors:
            self._eval_vectors[key] = user_vectors(key[0], self.wals, self.split, targets)
        return self._eval_vectors[key]

    def eval_wals(self, targets: str = "test"):
        """The WALS factors the results' WALS row (and ``ClassicRecommender(run, "wals")``) reads:
        the fit itself, or its item factors with the user vectors of :meth:`eval_user_factors`
        (so that the row reads what the model reads)."""
        folded = self.eval_user_factors(targets)
        if folded is None:
            return self.wals
        return SimpleNamespace(user_factors=folded, item_factors=self.wals.item_factors)

    # ----------------------------------------------------------------------- assembling

    @classmethod
    def open(cls, profile, dataset: str | None, out, data_dir=None, path=None, show_progress: bool = True,
             backbone=None, display_name: str | None = None, steps_back: int = 0) -> "Run":
        """Loads data, fits (or reloads) WALS in ``out/wals`` and loads the profile's backbone.

        Args:
            profile: The profile new stages are configured from.
            dataset: A registered dataset, or ``None`` with ``path``.
            out: The run directory (created when missing).
            path: An S3Rec-format file of your own instead of ``dataset``.
            backbone: An already loaded backbone to reuse (else the profile's is loaded).
            display_name: The dataset's name in prompts (default: the registry's or the file's stem).
            steps_back: Cut every user's last ``steps_back`` items before anything is fitted
                (see the class docstring); ``0``: the real split.

        Raises:
            CheckpointMismatchError: ``out`` holds factors fitted on another file or with other settings.
        """
        data = load_dataset(dataset, path=path, indexing=profile.indexing, seed=profile.seed, data_dir=data_dir,
                            display_name=display_name)
        split = LeaveOneOutSplit.from_data(data).earlier(steps_back)
        wals = ensure_wals(Path(out) / "wals", profile, split, show_progress, steps_back=steps_back)
        if backbone is None:
            backbone = load_backbone(BackboneSettings.from_profile(profile), device=resolve_device(profile.device))
        return cls(out, profile, split.data, split, wals, backbone, steps_back=steps_back)

    def at(self, out, backbone=None) -> "Run":
        """The same data, factors and backbone with another run directory (its ``wals/`` is
        written there too, so the directory is self-contained); ``backbone``: another loaded
        backbone instead (a tuning candidate's other LoRA adapters)."""
        other = Run(out, self.profile, self.data, self.split, self.wals, backbone or self.backbone, self.steps_back)
        if not (other.wals_dir / "wals.json").exists():
            self.wals.save(other.wals_dir, wals_metadata(self.data, profile=self.profile.name, **self._shift()))
        return other

    # ----------------------------------------------------------------------- layout

    @property
    def wals_dir(self) -> Path:
        return self.out / "wals"

    def stage_dir(self, variant: Variant | str, stage: int) -> Path:
        return self.out / Variant.parse(variant).name / f"stage{check_stage(stage)}"

    def is_finished(self, variant: Variant | str, stage: int) -> bool:
        return (self.stage_dir(variant, stage) / "final" / "result.json").exists()

    def read_log(self, variant: Variant | str, stage: int) -> list[dict]:
        """The JSON-lines training log of a stage."""
        return read_log_file(self.stage_dir(variant, stage) / "log.jsonl")

    def result(self, variant: Variant | str, stage: int) -> dict:
        """A finished stage's ``result.json``."""
        return read_json(self.stage_dir(variant, stage) / "final" / "result.json")

    # ----------------------------------------------------------------------- settings

    def settings(self, variant: Variant | str, stage: int, **overrides) -> TrainSettings:
        """A stage's settings under this run's profile."""
        return TrainSettings.from_profile(self.profile, stage, variant, **overrides)

    def encoder(self, with_embeddings: bool = True, max_history: int | None = None) -> PromptEncoder:
        """The prompt encoder of this run's data and backbone (``max_history``: the profile's)."""
        history = self.profile.max_history if max_history is None else max_history
        return PromptEncoder.for_backbone(self.split, self.backbone, history, with_embeddings)

    def config(self, settings: TrainSettings) -> dict:
        """Everything that determines a stage's result: compared on resume and at loading."""
        b = self.backbone
        return {
            "dataset": self.data.name,
            "data": data_identity(self.data),
            "indexing": self.data.indexing,
            "profile": self.profile.name,
            "backbone": {"kind": b.settings.kind, "source": b.source, "hidden_size": b.hidden_size,
                         **{k: v for k, v in asdict(b.settings).items() if k.startswith("lora") or k == "load_in_4bit"}},
            "projector": projector_overrides(self.profile),
            "prompt": self.encoder(settings.use_embeddings, settings.max_history).config(),
            "wals_fingerprint": self.wals.fingerprint(),
            "wals": asdict(self.wals.config),
            "train": train_record(settings),
            **self._shift(),
        }

    def _shift(self) -> dict:
        # recorded only for shifted runs, so that the real runs' configurations stay as they were
        return {"steps_back": self.steps_back} if self.steps_back else {}

    def _identity(self) -> dict:
        return {"wals_fingerprint": self.wals.fingerprint(), "dataset": self.data.name}

    def _check_data(self, saved: dict, what: str) -> None:
        """Refuses a stage trained on another file under the same dataset name."""
        recorded = (saved.get("data") or {}).get("sha256")
        if recorded and recorded != self.data.sha256:
            raise CheckpointMismatchError(
                f"The {what} were trained on another file named {self.data.name!r} (sha256 {recorded[:12]}..., "
                f"this one {self.data.sha256[:12]}...). Use the file the run was made from, or another --out."
            )

    # ----------------------------------------------------------------------- training

    def _check_stage_one(self, settings: TrainSettings) -> None:
        """Stage 2 with CF embeddings starts from stage 1's projectors: refuses it when they are missing."""
        first = self.stage_dir(settings.variant, 1) / "final"
        if settings.use_embeddings and not first.exists():
            raise FileNotFoundError(f"Stage 2 starts from stage 1's projectors, but {first} does not exist: run "
                                    "`train --stage 1` with the same --out first.")

    def build_model(self, settings: TrainSettings, projector_config: dict | None = None):
        """A fresh :class:`~llmrec_lite.fusion.FusionModel`; stage 2 starts from stage 1's trained tensors."""
        torch.manual_seed(settings.seed + settings.stage)
        model = FusionModel(self.backbone, self.wals.user_factors, self.wals.item_factors, output=settings.output,
                            use_embeddings=settings.use_embeddings,
                            projector_config=projector_config or projector_overrides(self.profile),
                            fold_in_users=((self.wals.config.regularization, self.wals.config.alpha)
                                           if settings.user_vectors == "prefix" else None),
                            **head_settings(settings))
        model.reset_lora(settings.seed)
        if settings.stage == 2:
            self._check_stage_one(settings)
            first = self.stage_dir(settings.variant, 1)
            if (first / "final").exists():
                check_matches(read_json(first / "config.json"), self._identity(), f"stage-1 results in {first}")
                load_final_into(model, first / "final", load_adapter=False)
        model.set_stage(settings.stage)
        return model

    def train(self, settings: TrainSettings, resume: bool = False, overwrite: bool = False, show_progress: bool = True,
              stop_after_steps: int | None = None) -> dict:
        """Trains one stage into ``out/<variant>/stage<k>``; returns (and saves) its result.

        Finished work is never replaced silently: a finished stage is reused when ``resume``
        is set and its settings are the same, and replaced only with ``overwrite``.

        Raises:
            FinishedWorkError: the folder holds a finished stage or an interrupted one with a
                checkpoint, and neither ``resume`` nor ``overwrite`` says what to do with it.
            CheckpointMismatchError: ``resume`` on a stage started with other settings.
        """
        if resume and overwrite:
            raise ValueError("resume and overwrite contradict each other: resume continues (or reuses) the stage, "
                             "overwrite deletes it and starts again. Pass one of them.")
        self.split.check_has_training_prompts()  # before anything in the folder is touched
        if settings.stage == 1 and settings.output == "text-id" and not settings.use_embeddings:
            raise ValueError("The text-id baseline without CF embeddings has nothing to train in stage 1 (no projectors "
                             "and no item embeddings of its own): train its stage 2 directly.")
        if settings.stage == 2:
            self._check_stage_one(settings)
        folder = self.stage_dir(settings.variant, settings.stage)
        # under `accelerate launch` every process trains the stage, and the main one holds the lock
        with stage_lock(folder) if process_state().is_main_process else contextlib.nullcontext():
            return self._train(folder, settings, resume, overwrite, show_progress, stop_after_steps)

    def _train(self, folder: Path, settings: TrainSettings, resume: bool, overwrite: bool, show_progress: bool,
               stop_after_steps: int | None) -> dict:
        config = json.loads(json.dumps(self.config(settings)))
        checkpoint = folder / "checkpoint"
        finished = (folder / "final" / "result.json").exists()
        saved = read_json(folder / "config.json") if (folder / "config.json").exists() else None
        if not overwrite:
            if finished and resume and saved == config:
                result = self.result(settings.variant, settings.stage)
                return {**result, "reused": True}
            if finished:
                raise FinishedWorkError(
                    f"{folder} already holds a finished stage {settings.stage} of {settings.variant}"
                    + ("" if saved == config else f" trained with other settings ({', '.join(_changed(saved, config))} differ)")
                    + ". Pass --overwrite to replace it"
                    + (", or --resume to reuse it." if saved == config else ", or choose another --out.")
                )
            if checkpoint.exists() and not resume:
                raise FinishedWorkError(
                    f"{folder} holds an interrupted stage with a checkpoint. Pass --resume to continue it, "
                    "or --overwrite to start again."
                )
        if resume and not overwrite:
            if not (checkpoint / "state.json").exists():
                raise FileNotFoundError(
                    f"Nothing to resume in {folder}: it has no checkpoint (is --out right?). "
                    "Run the same command without --resume to start the stage."
                )
            if saved != config:
                raise CheckpointMismatchError(
                    f"Cannot resume {folder}: it was started with other settings ({', '.join(_changed(saved, config))} "
                    "differ). Use the same command as the interrupted run, or another --out."
                )
            resuming = True
        else:
            resuming = False
        state = process_state()  # under `accelerate launch`, only the main process writes files
        if state.is_main_process:
            if not resuming and folder.exists():
                shutil.rmtree(folder)  # a fresh start never mixes with an older run's files
            folder.mkdir(parents=True, exist_ok=True)
            write_json(folder / "config.json", config)
        state.wait_for_everyone()

        model = self.build_model(settings)
        encoder = self.encoder(settings.use_embeddings, settings.max_history)

        epochs = [epoch_batches(encoder, settings, e) for e in range(settings.epochs)]
        val = validation_batches(encoder, settings)
        counters = fit(model, epochs, val, settings, self.backbone.tokenizer.pad_token_id, folder / "log.jsonl",
                       checkpoint, resume=resuming, show_progress=show_progress, stop_after_steps=stop_after_steps)
        if counters["interrupted"]:
            return {"stage": settings.stage, "interrupted": True, "steps": counters["steps"]}
        result = {
            "stage": settings.stage,
            "variant": settings.variant.name,
            "output": settings.output,
            "use_embeddings": settings.use_embeddings,
            "dataset": self.data.name,
            **summarize(counters, folder / "log.jsonl"),
            "wals_fingerprint": self.wals.fingerprint(),
            "out": str(folder),
        }
        if counters["main_process"]:
            save_final(counters["model"], folder / "final", result)
            shutil.rmtree(checkpoint, ignore_errors=True)
        process_state().wait_for_everyone()
        return result

    def ensure(self, settings: TrainSettings, show_progress: bool = True) -> dict:
        """The result of a finished stage with exactly these settings, training it if needed.

        Chapters call this so that a later chapter reuses what an earlier one trained in the
        same build (the book's ``make`` target starts from an empty run directory).
        """
        folder = self.stage_dir(settings.variant, settings.stage)
        started = (folder / "final" / "result.json").exists() or (folder / "checkpoint" / "state.json").exists()
        return self.train(settings, resume=started, show_progress=show_progress)

    # ----------------------------------------------------------------------- loading

    def load(self, variant: Variant | str, stage: int) -> Trained:
        """A trained model for evaluation or recommendation, with the settings and prompt
        encoder it was trained with.

        Raises:
            FileNotFoundError: the stage has not finished in this run.
            CheckpointMismatchError: the saved stage used other WALS factors, data or backbone.
        """
        variant = Variant.parse(variant)
        folder = self.stage_dir(variant, stage)
        if not (folder / "final" / "result.json").exists():
            raise FileNotFoundError(f"No finished stage {stage} of {variant} in {self.out}: train it first.")
        saved = read_json(folder / "config.json")
        self._check_data(saved, f"results in {folder}")
        check_matches(saved, self._identity(), f"results in {folder}")
        check_matches(saved["backbone"], {"kind": self.backbone.settings.kind, "hidden_size": self.backbone.hidden_size},
                      f"results in {folder} (backbone)")
        # runs recorded before these settings existed trained dot logits on the answer position
        settings = TrainSettings(**saved["train"])
        # training prompts (they carry their prefix) read the user vectors they were trained with;
        # evaluation prompts carry none and read the run's, as before
        model = FusionModel(self.backbone, self.wals.user_factors, self.wals.item_factors, output=settings.output,
                            use_embeddings=settings.use_embeddings, projector_config=saved["projector"], calibrate=False,
                            fold_in_users=((self.wals.config.regularization, self.wals.config.alpha)
                                           if settings.user_vectors == "prefix" else None),
                            **head_settings(settings))
        model.reset_lora(settings.seed)  # stage 1 never trained LoRA: identity adapters
        load_final_into(model, folder / "final", load_adapter=stage == 2)
        model.eval()
        prompt = saved.get("prompt") or {"add_bos": self.backbone.add_bos, "max_history": settings.max_history,
                                         "with_embeddings": settings.use_embeddings}
        return Trained(model, settings, self.encoder().with_config(prompt), stage, user_vectors=self.eval_user_factors)


def train_record(settings: TrainSettings) -> dict:
    """The stage's settings as its configuration records them."""
    return asdict(settings)


def head_settings(settings: TrainSettings) -> dict:
    """The item-token head's constructor arguments of :class:`~llmrec_lite.fusion.FusionModel`."""
    return {"item_logit": settings.item_logit, "logit_temperature": settings.logit_temperature,
            "dense_weight": settings.dense_weight, "history_bias": settings.history_bias, "readout": settings.readout,
            "cf_term": settings.cf_term, "known_bias": settings.known_bias}


def data_identity(data) -> dict:
    """What a run records about its data: enough to refuse another file and to reopen this one."""
    return {"name": data.name, "display_name": data.display_name, "sha256": data.sha256,
            # how the data was loaded, not where its file sits: an own file at lastfm/lastfm.txt stays one's own
            "registered": data.registered,
            "source": data.source}


def _changed(saved: dict | None, config: dict) -> list[str]:
    saved = saved or {}
    return sorted(k for k in set(config) | set(saved) if saved.get(k) != config.get(k)) or ["the run"]


def ensure_wals(folder: Path, profile, split, show_progress: bool = True, steps_back: int = 0):
    """Fits WALS on the training interactions once per run directory; later stages reuse it.

    ``steps_back`` is the shift of a tuning run's split (see :class:`Run`); factors fitted
    on another shift are refused.
    """
    folder = Path(folder)
    config = WALSConfig.from_profile(profile)
    data = split.data
    if (folder / "wals.json").exists():
        model, info = WALS.load(folder)
        recorded = info.get("data_sha256")
        if recorded and data.sha256 and recorded != data.sha256:
            raise CheckpointMismatchError(
                f"The WALS factors in {folder} were fitted on another file, {info.get('source') or 'of unknown place'} "
                f"({info.get('dataset')!r}), not on {data.source} ({data.name!r}): the sha256 differs. Use the file "
                "the run was made from, or another --out."
            )
        check_matches(info["config"], asdict(config), f"WALS factors in {folder}")
        check_matches(info, {"dataset": data.name, "indexing": data.indexing}, f"WALS factors in {folder}")
        if int(info.get("steps_back", 0)) != steps_back:
            raise CheckpointMismatchError(
                f"The WALS factors in {folder} were fitted with steps_back={info.get('steps_back', 0)} (each user's "
                f"last items cut off), this run asks for {steps_back}. Use another --out for a shifted run."
            )
        return model
    model = WALS(config).fit(split.train_matrix(), show_progress=show_progress)
    state = process_state()  # several processes fit the same factors (same seed); one writes them
    if state.is_main_process:
        model.save(folder, wals_metadata(data, profile=profile.name, **({"steps_back": steps_back} if steps_back else {})))
    state.wait_for_everyone()
    return model


def wals_metadata(data, **extra) -> dict:
    """What ``wals.json`` records about the data the factors were fitted on (enough to reopen it)."""
    return {"dataset": data.name, "indexing": data.indexing, "indexing_seed": data.seed, "source": data.source,
            "data_sha256": data.sha256, "registered": data.registered, "display_name": data.display_name, **extra}


def open_saved(run_dir, data_dir=None, path=None, variant: Variant | str | None = None, stage: int | None = None,
               show_progress: bool = True) -> Run:
    """Reopens a run directory with the profile and dataset it was trained with.

    The profile and dataset are read from a finished stage's ``config.json`` (the one named,
    else any) or, for a run holding only WALS factors, from ``wals/wals.json``.
    """
    run_dir = Path(run_dir)
    if stage is not None:
        check_stage(stage)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"--run {run_dir} " + ("is a file, not a run folder" if run_dir.exists() else "does not exist")
                                + ": give the folder that train --out, run --out or wals --out wrote.")
    if variant is not None and stage is not None:
        candidates = [run_dir / Variant.parse(variant).name / f"stage{stage}" / "config.json"]
    else:
        candidates = sorted(run_dir.glob("*/stage*/config.json"))
    configs = [p for p in candidates if p.exists()]
    if not configs:
        wals_dir = next((d for d in (run_dir / "wals", run_dir) if (d / "wals.json").exists()), None)
        if wals_dir is not None and variant is None:
            return _open_wals_only(run_dir, wals_dir, data_dir, path)
        what = f"finished {Variant.parse(variant)} stage {stage}" if variant is not None and stage is not None \
            else "trained stage"
        raise FileNotFoundError(f"{run_dir} holds no {what} (no config.json found): train into it first "
                                f"(python -m llmrec_lite train ... --out {run_dir}).")
    saved = read_json(configs[0])
    recorded = saved.get("data") or {}
    if path is None and recorded and not recorded.get("registered", True):
        path = recorded["source"]  # a run made from the user's own file reopens that file
        if not Path(path).exists():
            raise FileNotFoundError(f"{run_dir} was made from {path}, which is no longer there: pass its new place "
                                    "with --path.")
    return Run.open(get_profile(saved["profile"]), None if path else saved["dataset"], run_dir, data_dir=data_dir,
                    path=path, show_progress=show_progress, display_name=recorded.get("display_name"))


def _open_wals_only(run_dir: Path, wals_dir: Path, data_dir=None, path=None) -> Run:
    """A run folder that holds WALS factors and no trained stage (``wals --out``): its data, split
    and factors, for the classic recommenders; no backbone is loaded."""
    info = read_json(wals_dir / "wals.json", f"Delete {wals_dir} and fit the factors again.")
    registered = info.get("registered")
    if registered is None:  # factors saved before the metadata said how the data was loaded
        registered = info.get("dataset") in registry.DATASETS and Path(info.get("source", "")).parent.name == info.get("dataset")
    if path is None and not registered:
        path = info.get("source")
        if not path or not Path(path).exists():
            raise FileNotFoundError(f"{wals_dir} was fitted on {path}, which is no longer there: pass its new place "
                                    "with --path.")
    data = load_dataset(None if path else info["dataset"], path=path, indexing=info.get("indexing", "sequential"),
                        seed=int(info.get("indexing_seed", 0)), data_dir=data_dir, display_name=info.get("display_name"))
    if info.get("data_sha256") and data.sha256 and info["data_sha256"] != data.sha256:
        raise CheckpointMismatchError(
            f"The WALS factors in {wals_dir} were fitted on another file than {data.source} (sha256 differs). "
            "Use the file they were fitted on, or fit new factors.")
    steps_back = int(info.get("steps_back", 0))
    split = LeaveOneOutSplit.from_data(data).earlier(steps_back)
    model, _ = WALS.load(wals_dir)
    return Run(run_dir, get_profile(info.get("profile", "cpu")), split.data, split, model, None, steps_back=steps_back)


# --------------------------------------------------------------------------- evaluations, cached in OUT/eval


def table_users(run) -> np.ndarray:
    """The test users of the item-token and classic rows: all, or the profile's seeded subset."""
    return evaluation_users(run.split, run.profile.eval_users, seed=run.profile.seed)



def evaluate_cached(run, variant: Variant | str, stage: int, task: str, template: str, mask_history: bool = False,
                    show_progress: bool = True, cf_weight: float = 0.0):
    """Evaluates a trained model on the profile's test users, caching the result in ``out/eval``.

    The model is prompted as it was trained (its recorded prompt settings). The cache key
    includes the trained model's fingerprint (its result.json), so a retrained model is
    never served an old evaluation. ``cf_weight > 0``: late fusion with the WALS score
    (:mod:`llmrec_lite.late_fusion`).
    """
    variant = Variant.parse(variant)
    n_users = evaluation_size(run.profile, variant)
    trained = (run.stage_dir(variant, stage) / "final" / "result.json").read_bytes()
    fused = f"|cf_weight={cf_weight!r}" if cf_weight else ""  # the model alone keeps its earlier keys
    vectors = run.profile.eval_user_vectors
    reading = "" if vectors == "fitted" else f"|user_vectors={vectors}"  # fitted ones keep their keys too
    batch = run.profile.eval_batch_size  # rounding only, but a cached result says how it was made
    key = hashlib.sha256(trained + f"{task}|{template}|{mask_history}|{n_users}{fused}{reading}|batch={batch}".encode()
                         ).hexdigest()[:16]
    name = f"{variant}-stage{stage}{'-fused' if cf_weight else ''}-{task}-{template}"
    cache = run.out / "eval" / f"{name}-{'masked' if mask_history else 'plain'}-{key}.json"
    if cache.exists():
        saved = read_json(cache, "It is a cache of one evaluation: delete it and run the command again to recompute it.")
        other, alone = saved.get("other_ranks"), saved.get("llm_alone_ranks")
        return Evaluation(saved["metrics"], np.array(saved["top_items"]), np.array(saved["gold"]),
                          np.array(saved["users"]), np.array(saved["ranks"]), None if other is None else np.array(other),
                          None if alone is None else np.array(alone))
    users = evaluation_users(run.split, n_users, seed=run.profile.seed)
    extra = {"cf_weight": cf_weight} if cf_weight else {}
    if variant.output == "item-token":
        extra["batch_size"] = batch
    ev = evaluate_model(run.load(variant, stage), task=task, template=template, users=users, mask_history=mask_history,
                        show_progress=show_progress, user_factors=run.eval_user_factors(), **extra)
    write_json(cache, {"metrics": ev.metrics, "top_items": ev.top_items.tolist(), "gold": ev.gold.tolist(),
                       "users": ev.users.tolist(), "ranks": ev.ranks.tolist(),
                       "other_ranks": None if ev.other_ranks is None else ev.other_ranks.tolist(),
                       "llm_alone_ranks": None if ev.llm_alone_ranks is None else ev.llm_alone_ranks.tolist()})
    return ev
