"""The fusion model: backbone + projectors + CF embeddings, with two output sides.

Input side. :meth:`FusionModel.input_embeddings` looks the prompt's tokens up in the
backbone's embedding table and writes, at every slot, the projected CF vector of that
user (user projector) or item (item projector). With ``use_embeddings=False`` the prompts
carry ids as text and no slot exists: the text-only baseline.

Output side (``output=``):

- ``"text-id"`` (the paper's and OpenP5's way): the response is the target's text id
  (``LastFM item_1024``), trained with cross-entropy on the response tokens and generated
  token by token at evaluation.
- ``"item-token"`` (this book's extension): every catalogue item is one output token whose
  output embedding is the item projector's image of the item's CF vector, the same
  projector as on the input side. The final hidden state after ``Response:`` is scored
  against all of them at once: one forward pass ranks the whole catalogue. Without
  embeddings (baseline), the item tokens get freely learned output embeddings instead.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
import math
import weakref

import torch
from torch import nn
import torch.nn.functional as F

from llmrec_lite.backbone import Backbone, cache_of, with_cache
from llmrec_lite.projectors import CheckpointMismatchError, ProjectorConfig, Projectors
from llmrec_lite.prompts import Batch
from llmrec_lite.settings import check_item_logit
from llmrec_lite.variants import OUTPUTS, Variant, check_stage
from llmrec_lite.wals import fold_in
from llmrec_lite.weights import compute_weights


def seen_pairs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(row, item)`` pairs of the items each prompt of the batch shows (``None``: not recorded)."""
    return None if batch.seen_batch is None else (batch.seen_batch, batch.seen_items)


def known_pairs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(row, item)`` pairs of every item each row's user consumed before its target, shown
    or not (``None``: not recorded)."""
    return None if batch.known_batch is None else (batch.known_batch, batch.known_items)


def head_facts(model: "FusionModel") -> dict:
    """Which terms an item-token model's answer score has, in words for chapter 4.5's prose.

    ``head_logit``: ``"dot"`` or ``"cosine"``; ``head_temperature``: the ``T`` of cosine
    logits (an untrained model's is the initial one; words for dot logits); ``head_cf``,
    ``head_history``, ``head_known``, ``head_readout``: ``"used"`` or ``"not used"``;
    ``head_dense``: the dense share of the loss. Read from the built model, so a switch the
    model ignores (``cf_term`` without CF embeddings, say) reads as not used.
    """
    used = lambda on: "used" if on else "not used"  # noqa: E731
    cosine = model.item_logit == "cosine"
    return {"head_logit": model.item_logit,
            "head_temperature": round(math.exp(-model.item_logit_log_scale.detach().item()), 6) if cosine
            else "not used: dot logits",
            "head_cf": used(model.cf_term), "head_history": used(model.history_bias),
            "head_known": used(model.known_bias), "head_readout": used(model.readout is not None),
            "head_dense": model.dense_weight}


def _offset_mask(logits: torch.Tensor, pairs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """A 0/1 mask of ``logits``' shape, 1 at every ``(row, item)`` pair: an item listed twice
    gets its offset once."""
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask[pairs[0].to(logits.device), pairs[1].to(logits.device)] = True
    return mask


class FusionModel(nn.Module):
    """Backbone, projectors and frozen CF embeddings in one module.

    Args:
        backbone: A loaded :class:`~llmrec_lite.backbone.Backbone` (frozen, LoRA attached).
        user_factors, item_factors: The WALS embeddings (kept frozen, as buffers).
        output: ``"text-id"`` or ``"item-token"``.
        use_embeddings: ``False`` for the text-only baseline (ids as text, and for the
            item-token output freely learned item embeddings).
        projector_config: Overrides for :class:`ProjectorConfig` (``hidden_dim``, ``activation``...).
        projectors: Ready-made projectors (e.g. loaded from a checkpoint) instead of new ones.
        calibrate: Scale new projectors to the token embeddings' mean norm.
        item_logit: How the item-token side turns a hidden state ``h`` and an item vector
            ``e_j`` into a logit: ``"dot"`` (``s * <h, e_j>``, ``s`` learned from
            ``1/sqrt(hidden)``) or ``"cosine"`` (``cos(h, e_j) / T``, ``log(1/T)`` learned).
        logit_temperature: The initial ``T`` of cosine logits.
        dense_weight: Share of the training loss that comes from dense next-item supervision
            (each history position predicts the item after it); ``0`` trains on the answer
            position only.
        history_bias: Add one learned offset ``b`` (starting at 0) to the logit of every item
            the prompt's history shows. The model reads its own prompt, so this is part of the
            model, not a filter: it learns from the training targets whether a recommender
            should repeat what the user just consumed (``b > 0``) or look past it (``b < 0``).
            Ranking with the history masked is unchanged by it.
        known_bias: Add a second learned offset ``c`` (starting at 0) to the answer's logit of
            every item the user consumed before the target, shown or not
            (:attr:`~llmrec_lite.prompts.Rendered.known`; a shown item gets ``b + c``). The
            prompt shows the last ``max_history`` items, while the user's CF vector encodes
            them all, so the older ones score high and ``b`` never reaches them. Like ``b``,
            it is learned from the training targets (repeat or look past), and ranking with
            the history masked is unchanged by it; unlike ``b``, it reads more than the prompt
            shows: the user's whole interaction list, which a recommender holds for every
            user it serves. Dense positions leave it out.
        readout: Score ``W h`` instead of ``h``: a learned ``hidden x hidden`` linear map
            (starting as the identity, so an untrained model is unchanged) between the
            backbone's last hidden state and the item vectors. The item projector serves the
            input side (where its outputs must look like token embeddings) and the output side
            at once; the readout lets the frozen backbone's final space meet it half-way, from
            stage 1 on.
        cf_term: Add ``w * <u, v_j>`` to every answer position's item scores: the WALS score of
            item ``j`` for the user vector ``u`` the prompt reads, times one learned weight
            ``w`` (starting at 0, so an untrained model is unchanged). The projected user
            vector is in the prompt already; this term hands its dot product with the item
            factors straight to the scores, so the LLM has to learn only what WALS misses.
            Dense positions leave it out: the user's vector has seen the items they predict.
            Models without CF embeddings have no such term.
        fold_in_users: ``(regularization, alpha)`` of the WALS fit: then a training prompt that
            carries its prefix (:attr:`~llmrec_lite.prompts.Rendered.prefix`) gets a user
            vector folded in from the items before its target (:func:`~llmrec_lite.wals.fold_in`)
            instead of the fitted one. The fitted vector was solved from every training item,
            the prompt's answer included, so it encodes the answer it is asked for; at test
            time it never does. Prompts without a prefix (validation, evaluation) read
            :attr:`user_factors`: the fitted vectors, solved from the training part alone,
            unless evaluation swaps in others (:meth:`reading_users`).
    """

    def __init__(
        self,
        backbone: Backbone,
        user_factors: torch.Tensor,
        item_factors: torch.Tensor,
        output: str = "item-token",
        use_embeddings: bool = True,
        projector_config: dict | None = None,
        projectors: Projectors | None = None,
        calibrate: bool = True,
        item_logit: str = "dot",
        logit_temperature: float = 0.07,
        dense_weight: float = 0.0,
        history_bias: bool = False,
        known_bias: bool = False,
        readout: bool = False,
        cf_term: bool = False,
        fold_in_users: tuple[float, float] | None = None,
    ):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"Unknown output side {output!r}; choose one of {OUTPUTS}.")
        check_item_logit(item_logit, logit_temperature, dense_weight)
        self.item_logit = item_logit
        self.dense_weight = float(dense_weight)
        self.history_bias = bool(history_bias)
        self.known_bias = bool(known_bias) and output == "item-token"
        self.cf_term = bool(cf_term) and use_embeddings and output == "item-token"
        self.fold_in_users = None if fold_in_users is None else (float(fold_in_users[0]), float(fold_in_users[1]))
        self.backbone = backbone
        self.output = output
        self.use_embeddings = use_embeddings
        self.model = backbone.model  # registered, so .parameters() sees the LoRA weights
        self.register_buffer("user_factors", torch.as_tensor(user_factors, dtype=torch.float32).clone())
        self.register_buffer("item_factors", torch.as_tensor(item_factors, dtype=torch.float32).clone())
        hidden = backbone.hidden_size
        self.target_norm = backbone.token_embedding_norm()
        self.projectors: Projectors | None = None
        self.free_item_embeddings: nn.Embedding | None = None
        if use_embeddings:
            if projectors is None:
                config = ProjectorConfig(cf_dim=self.user_factors.shape[1], hidden_size=hidden, **(projector_config or {}))
                projectors = Projectors(config)
                if calibrate:
                    projectors.calibrate(self.user_factors, self.item_factors, self.target_norm)
            elif projectors.config.hidden_size != hidden or projectors.config.cf_dim != self.user_factors.shape[1]:
                raise CheckpointMismatchError(
                    f"Projectors map {projectors.config.cf_dim} -> {projectors.config.hidden_size}, but the CF "
                    f"embeddings have {self.user_factors.shape[1]} dimensions and the backbone's hidden size is {hidden}."
                )
            self.projectors = projectors.to(self.user_factors.device)
        elif output == "item-token":
            # the no-embedding baseline: one freely learned output vector per item, at token scale
            self.free_item_embeddings = nn.Embedding(self.item_factors.shape[0], hidden)
            nn.init.normal_(self.free_item_embeddings.weight, std=self.target_norm / hidden**0.5)
        # Dot logits are scale * <h, e_j>. The final hidden state and the item vectors both have
        # large norms, so raw dot products would start as a near one-hot softmax; a learned
        # log-scale starting at 1/sqrt(hidden) keeps the initial loss near log(items).
        # Cosine logits are cos(h, e_j) / T: bounded, so the learned log(1/T) alone sets how
        # peaked the softmax over the catalogue can be (Recformer uses T = 0.05).
        initial = -0.5 * math.log(hidden) if item_logit == "dot" else -math.log(logit_temperature)
        self.item_logit_log_scale = nn.Parameter(torch.tensor(float(initial)), requires_grad=output == "item-token")
        self.readout: nn.Linear | None = None
        if readout and output == "item-token":
            self.readout = nn.Linear(hidden, hidden, bias=False)
            with torch.no_grad():
                self.readout.weight.copy_(torch.eye(hidden))
        # starts at 0: until trained, the history changes no score
        self.item_history_bias = nn.Parameter(torch.zeros(()), requires_grad=self._trains_history_bias())
        self.item_known_bias = nn.Parameter(torch.zeros(()), requires_grad=self.known_bias)
        # starts at 0 as well: until trained, the WALS score changes no score
        self.item_cf_weight = nn.Parameter(torch.zeros(()), requires_grad=self.cf_term)
        # A 4-bit backbone is placed at loading and cannot be moved afterwards, so the rest of
        # the model (factors, projectors, item embeddings) joins it on the backbone's device.
        device = backbone.token_embeddings().device
        for name, child in self.named_children():
            if child is not self.model:
                child.to(device)
        for name, buf in list(self.named_buffers(recurse=False)):
            setattr(self, name, buf.to(device))
        for param in self.parameters(recurse=False):
            param.data = param.data.to(device)
        # The LoRA adapters live inside the shared backbone; see claim_backbone.
        self._lora_snapshot: dict[str, torch.Tensor] | None = None
        self._adapters_merged = False  # see compute_weights
        self.claim_backbone()

    def _trains_history_bias(self) -> bool:
        return self.output == "item-token" and self.history_bias

    @property
    def num_items(self) -> int:
        return int(self.item_factors.shape[0])

    @property
    def variant(self) -> Variant:
        return Variant(self.output, self.use_embeddings)

    def _lora_parameters(self) -> dict[str, nn.Parameter]:
        return {name: p for name, p in self.model.named_parameters() if "lora_" in name}

    def claim_backbone(self) -> None:
        """Makes the shared backbone's LoRA adapters this model's own.

        Every model built on one :class:`~llmrec_lite.backbone.Backbone` (a stage-1 and a
        stage-2 model of one run, say) shares its weights, LoRA adapters included, so that
        a process holds the backbone once. Without care, loading a second model would
        silently replace the first one's adapters. Instead, the backbone remembers which
        model its adapters belong to; when another model runs, the current owner's adapters
        are copied aside and the new owner's are put back. Every forward pass starts here
        (through :meth:`input_embeddings`), so each model always runs with its own adapters.
        """
        owner_ref = getattr(self.backbone, "_lora_owner", None)
        owner = owner_ref() if owner_ref is not None else None
        if owner is self:
            return
        if owner is not None:
            owner._lora_snapshot = {n: p.detach().clone() for n, p in owner._lora_parameters().items()}
        if self._lora_snapshot is not None:
            with torch.no_grad():
                for name, param in self._lora_parameters().items():
                    param.copy_(self._lora_snapshot[name])
            self._lora_snapshot = None
        self.backbone._lora_owner = weakref.ref(self)

    def reset_lora(self, seed: int) -> None:
        """Re-initialises every LoRA adapter (B = 0, so the backbone is unchanged).

        Several models in one process share the backbone object, so each run starts by
        putting the adapters back to their initial state instead of inheriting another run's
        (:meth:`claim_backbone` first keeps the previous owner's adapters aside).
        """
        self.claim_backbone()
        torch.manual_seed(seed)
        for module in self.model.modules():
            if hasattr(module, "reset_lora_parameters") and hasattr(module, "lora_A"):
                for name in list(module.lora_A.keys()):
                    module.reset_lora_parameters(name, True)

    def set_stage(self, stage: int) -> None:
        """Marks what trains. Stage 1: projectors (and the item-token extras) only. Stage 2: those plus LoRA."""
        check_stage(stage)
        for name, p in self.named_parameters():
            if "lora_" in name:
                p.requires_grad_(stage == 2)
            elif name.startswith(("projectors.", "free_item_embeddings.", "readout.")):
                p.requires_grad_(True)
            elif name == "item_logit_log_scale":
                p.requires_grad_(self.output == "item-token")
            elif name == "item_history_bias":
                p.requires_grad_(self._trains_history_bias())
            elif name == "item_known_bias":
                p.requires_grad_(self.known_bias)
            elif name == "item_cf_weight":
                p.requires_grad_(self.cf_term)
            else:
                p.requires_grad_(False)

    def trainable_parameters(self) -> dict:
        """Trainable parameter counts by part (projectors, LoRA, free item embeddings)."""
        count = lambda ps: sum(p.numel() for p in ps if p.requires_grad)
        out = {"lora": count(self.model.parameters())}
        if self.projectors is not None:
            out["projectors"] = count(self.projectors.parameters())
        if self.free_item_embeddings is not None:
            out["free_item_embeddings"] = count(self.free_item_embeddings.parameters())
        if self.readout is not None:
            out["readout"] = count(self.readout.parameters())
        if self.item_logit_log_scale.requires_grad:
            out["logit_scale"] = 1
        if self.item_history_bias.requires_grad:
            out["history_bias"] = 1
        if self.item_known_bias.requires_grad:
            out["known_bias"] = 1
        if self.item_cf_weight.requires_grad:
            out["cf_weight"] = 1
        out["total"] = sum(out.values())
        return out

    # ----------------------------------------------------------------------- input side

    def slot_vectors(self, batch: Batch) -> torch.Tensor:
        """Projected CF vectors for every slot of the batch, in slot order."""
        if self.projectors is None:
            raise RuntimeError("This model has no projectors (text-only baseline): its prompts must not contain slots.")
        is_user = batch.slot_is_user
        vectors = torch.zeros(len(is_user), self.backbone.hidden_size, device=self.user_factors.device)
        # out-of-place index_put keeps the graph: gradients reach both projectors
        if is_user.any():
            users = self.projectors.user(self.row_user_factors(batch)[batch.slot_batch[is_user]])
            vectors = vectors.to(users.dtype).index_put((is_user.nonzero().squeeze(1),), users)
        if (~is_user).any():
            items = self.projectors.item(self.item_factors[batch.slot_values[~is_user]])
            vectors = vectors.to(items.dtype).index_put(((~is_user).nonzero().squeeze(1),), items.to(vectors.dtype))
        return vectors

    @contextmanager
    def reading_users(self, user_factors: torch.Tensor | None):
        """Within the block, prompts read ``user_factors`` (``(users, k)``) instead of the
        fitted vectors, in their slots and in the CF term; ``None`` changes nothing.
        Evaluation uses it for user vectors folded in from each prompt's whole history
        (:func:`~llmrec_lite.wals.history_user_factors`).

        Raises:
            ValueError: If the shape is not the fitted factors' (another split or WALS fit).
        """
        if user_factors is None:
            yield self
            return
        fitted = self.user_factors
        if tuple(user_factors.shape) != tuple(fitted.shape):
            raise ValueError(f"User factors of shape {tuple(user_factors.shape)} cannot replace this model's "
                             f"{tuple(fitted.shape)}: compute them from the split and WALS fit the model was built on.")
        self.user_factors = user_factors.to(fitted.device, fitted.dtype)
        try:
            yield self
        finally:
            self.user_factors = fitted

    def row_user_factors(self, batch: Batch) -> torch.Tensor:
        """``(batch, k)`` the CF vector of each row's user: folded in from the row's training
        prefix (``fold_in_users`` and a training batch), else the fitted one."""
        if self.fold_in_users is not None and batch.prefix_batch is not None:
            # the input slots and the CF term both read them: fold in once per batch
            if "prefix_user_factors" not in batch.extras:
                batch.extras["prefix_user_factors"] = self.prefix_user_factors(batch)
            return batch.extras["prefix_user_factors"]
        return self.user_factors[batch.users]

    def cf_scores(self, batch: Batch) -> torch.Tensor | None:
        """``(batch, items)`` WALS scores ``<u, v_j>`` of each row's user (``None`` without ``cf_term``)."""
        if not self.cf_term:
            return None
        return self.row_user_factors(batch).float() @ self.item_factors.float().T

    @torch.no_grad()
    def prefix_user_factors(self, batch: Batch) -> torch.Tensor:
        """``(batch, k)`` user factors folded in from each row's training prefix (see ``fold_in_users``)."""
        rows = batch.prefix_batch.cpu().numpy()
        items = batch.prefix_items.cpu().numpy()
        baskets = [items[rows == r] for r in range(len(batch))]
        with torch.autocast(self.item_factors.device.type, enabled=False):  # a linear solve: float32
            return fold_in(self.item_factors.float(), baskets, *self.fold_in_users)

    def input_embeddings(self, batch: Batch) -> torch.Tensor:
        """Token embeddings with projected CF vectors written into the slots."""
        self.claim_backbone()  # every forward pass starts here: run with this model's own adapters
        embed = self.model.get_input_embeddings()
        embeds = embed(batch.input_ids)
        if len(batch.slot_values):
            vectors = self.slot_vectors(batch)
            dtype = torch.promote_types(embeds.dtype, vectors.dtype)  # bf16 under autocast, else float32
            embeds = embeds.to(dtype).index_put((batch.slot_batch, batch.slot_pos), vectors.to(dtype))
        return embeds

    # ----------------------------------------------------------------------- output side

    def item_output_embeddings(self) -> torch.Tensor:
        """One output vector per catalogue item: ``f_item(v_j)`` (tied to the input side)."""
        if self.projectors is not None:
            return self.projectors.item(self.item_factors)
        if self.free_item_embeddings is not None:
            return self.free_item_embeddings.weight
        raise RuntimeError("Item-token scores need projectors or free item embeddings (output='item-token').")

    def item_matrix(self) -> torch.Tensor:
        """``(items, hidden)`` float32 matrix the hidden states are scored against: the item
        output embeddings, unit-normalised for cosine logits. Evaluation computes it once
        and passes it to :meth:`score_items` for every batch."""
        items = self.item_output_embeddings().float()  # (under autocast the projector itself runs in bf16)
        return F.normalize(items, dim=-1) if self.item_logit == "cosine" else items

    def item_logits(self, hidden: torch.Tensor, items: torch.Tensor | None = None,
                    seen: tuple[torch.Tensor, torch.Tensor] | None = None,
                    cf: torch.Tensor | None = None,
                    known: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``(rows, items)`` logits of hidden states ``(rows, hidden)`` against the catalogue.

        Args:
            seen: ``(row, item)`` index pairs of the items each row's prompt shows; with
                ``history_bias`` their logits get the learned offset.
            cf: ``(rows, items)`` WALS scores (:meth:`cf_scores`), added times the learned weight.
            known: ``(row, item)`` index pairs of every item each row's user consumed before
                its target; with ``known_bias`` their logits get the second learned offset.
        """
        items = self.item_matrix() if items is None else items
        # float32 even under autocast: bfloat16 scores would tie thousands of items, and ties
        # decide ranks
        with torch.autocast(hidden.device.type, enabled=False):
            hidden = hidden.float()
            if self.readout is not None:
                hidden = self.readout(hidden)
            if self.item_logit == "cosine":
                hidden = F.normalize(hidden, dim=-1)
            logits = self.item_logit_log_scale.exp() * (hidden @ items.float().T)
            if self.history_bias and seen is not None and len(seen[0]):
                logits = logits + self.item_history_bias * _offset_mask(logits, seen)
            if self.known_bias and known is not None and len(known[0]):
                logits = logits + self.item_known_bias * _offset_mask(logits, known)
            if cf is not None:
                logits = logits + self.item_cf_weight * cf.to(logits.device)
            return logits

    def hidden_states(self, batch: Batch) -> torch.Tensor:
        """Final (normalised) hidden states of every position, ``(batch, length, hidden)``."""
        embeds = self.input_embeddings(batch)  # claims the backbone's adapters first
        with self.idle_adapters_off():
            out = self.backbone.decoder()(
                inputs_embeds=embeds,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                use_cache=False,
            )
        return out.last_hidden_state

    @contextmanager
    def compute_weights(self, bf16: bool, merge_lora: bool = False):
        """Within the block, the backbone runs on compute copies of its frozen weights (see
        :func:`llmrec_lite.weights.compute_weights`): cast to bfloat16 once when ``bf16``
        (the block's passes run under bfloat16 autocast), and, in a pass without gradients,
        with this model's LoRA adapters merged into them. On exit every weight is the
        object it was before."""
        self.claim_backbone()  # merge this model's own adapters
        with compute_weights(self.model, bf16, merge_lora) as merged:
            self._adapters_merged = merged
            try:
                yield self
            finally:
                self._adapters_merged = False

    def idle_adapters_off(self):
        """A context that runs the backbone without its LoRA adapters while they cannot change
        anything: none of them trains (stage 1, evaluation) and every ``lora_B`` is still zero,
        as :meth:`reset_lora` leaves it. Outputs and gradients are then the same, bit for bit
        (the adapters add exact zeros), but a CPU step is much faster: in training mode LoRA's
        dropout copies the input of every adapted layer, which costs more than the adapters'
        own products. Otherwise (stage 2, a trained model) the adapters run as usual, unless
        :meth:`compute_weights` merged them (they are off then, and stay off).
        """
        if self._adapters_merged:
            return nullcontext()
        lora = self._lora_parameters()
        idle = (lora and hasattr(self.model, "disable_adapter")
                and not any(p.requires_grad for p in lora.values())
                and not any(bool(p.detach().any()) for name, p in lora.items() if "lora_B" in name))
        return self._without_adapters(lora) if idle else nullcontext()

    @contextmanager
    def _without_adapters(self, lora: dict[str, nn.Parameter]):
        # peft switches the adapters back on by marking them trainable, which would make stage 1
        # compute (and keep) LoRA gradients from its second step on: the flags are put back
        with self.model.disable_adapter():
            yield
        for p in lora.values():
            p.requires_grad_(False)

    def last_hidden(self, batch: Batch) -> torch.Tensor:
        """Final (normalised) hidden state at the last prompt position of every row."""
        return self.hidden_states(batch)[:, -1]  # left padding: the last column is every row's last token

    def score_items(self, batch: Batch, items: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, items)`` scores of every catalogue item (item-token output; no response in the batch).

        Args:
            items: :meth:`item_matrix`, when the caller computed it once for many batches.
        """
        return self.answer_scores(self.last_hidden(batch), batch, items)

    def answer_scores(self, hidden: torch.Tensor, batch: Batch, items: torch.Tensor | None = None,
                      cf_term: bool = True) -> torch.Tensor:
        """``(batch, items)`` item scores of each row's answer position from its hidden state
        ``(batch, hidden)``, with every term of the head (history offset, CF term): the one
        place training, validation and evaluation score an answer.

        Args:
            cf_term: ``False`` leaves the WALS score out (its weight ``w`` read as 0): the LLM's
                own term, which evaluation ranks beside the full score to show what the LLM
                adds to the WALS model it reads.
        """
        cf = self.cf_scores(batch) if cf_term else None
        return self.item_logits(hidden, items, seen_pairs(batch), cf, known_pairs(batch))

    @torch.no_grad()
    def greedy_generate(self, batch: Batch, max_new_tokens: int) -> torch.Tensor:
        """Greedy continuation of left-padded prompts (text-id output), with a KV cache.

        Returns:
            ``(batch, max_new_tokens)`` generated token ids.
        """
        lm = self.model
        out = lm(inputs_embeds=self.input_embeddings(batch), attention_mask=batch.attention_mask,
                 position_ids=batch.position_ids, use_cache=True, logits_to_keep=1)
        mask, positions = batch.attention_mask, batch.position_ids[:, -1:]
        tokens = []
        for _ in range(max_new_tokens):
            next_token = out.logits[:, -1].argmax(-1, keepdim=True)
            tokens.append(next_token)
            mask = torch.cat([mask, torch.ones_like(next_token)], dim=1)
            positions = positions + 1
            out = lm(input_ids=next_token, attention_mask=mask, position_ids=positions, **with_cache(cache_of(out)))
        return torch.cat(tokens, dim=1)

    def forward(self, batch: Batch) -> dict:
        """Training loss for the model's output side.

        ``text-id``: mean cross-entropy over response tokens (batch built with responses).
        ``item-token``: cross-entropy of the target among all items (batch built without);
        with ``dense_weight > 0`` mixed with the mean cross-entropy of every history position
        against the item that followed it, all from the same forward pass. ``answer_loss``
        is the answer position's part alone (what validation compares).
        """
        if self.output == "item-token":
            states = self.hidden_states(batch)
            items = self.item_matrix()
            scores = self.answer_scores(states[:, -1], batch, items)
            answer = F.cross_entropy(scores, batch.targets)
            loss = answer
            if self.dense_weight > 0 and batch.next_items is not None and len(batch.next_items):
                dense_seen = None if batch.next_seen_batch is None else (batch.next_seen_batch, batch.next_seen_items)
                dense = F.cross_entropy(self.item_logits(states[batch.next_batch, batch.next_pos], items, dense_seen),
                                        batch.next_items)
                loss = (1 - self.dense_weight) * answer + self.dense_weight * dense
            return {"loss": loss, "answer_loss": answer.detach(), "scores": scores}
        embeds = self.input_embeddings(batch)
        with self.idle_adapters_off():
            out = self.model(
                inputs_embeds=embeds,
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids,
                labels=batch.labels,
                use_cache=False,
            )
        return {"loss": out.loss, "logits": out.logits}
