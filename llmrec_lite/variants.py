"""Typed identities of a trained model: its variant (output side, with or without CF
embeddings) and its training stage.

A variant names a folder of a run directory (``item-token``, ``item-token-text``,
``text-id``, ``text-id-text``) and a row label of the results table; code passes the
:class:`Variant` itself around instead of building and taking apart those strings.
"""

from __future__ import annotations

from dataclasses import dataclass

OUTPUTS = ("item-token", "text-id")
STAGES = (1, 2)
TARGETS = ("valid", "test")
TEXT_SUFFIX = "-text"


@dataclass(frozen=True)
class Variant:
    """What a fusion model is, apart from its training stage.

    Attributes:
        output: ``"item-token"`` (one output token per item, tied to the item projector) or
            ``"text-id"`` (the paper's: the answer is the item's text id).
        use_embeddings: ``False`` for the text-only baseline (ids written as text, no CF embeddings).
    """

    output: str = "item-token"
    use_embeddings: bool = True

    def __post_init__(self):
        if self.output not in OUTPUTS:
            raise ValueError(f"Unknown output side {self.output!r}; choose one of {', '.join(OUTPUTS)}.")

    @property
    def name(self) -> str:
        """The folder name inside a run directory (``item-token``, ``text-id-text``, ...)."""
        return self.output + ("" if self.use_embeddings else TEXT_SUFFIX)

    @classmethod
    def parse(cls, name: "str | Variant") -> "Variant":
        """The variant a folder name stands for (a :class:`Variant` is returned as it is)."""
        if isinstance(name, Variant):
            return name
        text_only = name.endswith(TEXT_SUFFIX)
        output = name[: -len(TEXT_SUFFIX)] if text_only else name
        if output not in OUTPUTS:
            known = [Variant(o, e).name for o in OUTPUTS for e in (True, False)]
            raise ValueError(f"Unknown variant {name!r}; choose one of {', '.join(known)}.")
        return cls(output, not text_only)

    @property
    def label(self) -> str:
        """A short human-readable description (results tables, figure legends)."""
        side = self.output.replace("-", " ")
        return f"{side}, CF embeddings" if self.use_embeddings else f"{side}, ids as text (no CF)"

    def __str__(self) -> str:
        return self.name


# The four variants, named once: the folders of a run directory and the LLM rows of the results.
ITEM_TOKEN = Variant("item-token", True)
ITEM_TOKEN_TEXT = Variant("item-token", False)  # the same model without CF embeddings
TEXT_ID = Variant("text-id", True)
TEXT_ID_TEXT = Variant("text-id", False)  # OpenP5's text-only Llama analogue


def check_stage(stage) -> int:
    """A training stage (1: projectors only, 2: projectors + LoRA), validated."""
    if stage not in STAGES:
        raise ValueError(f"Unknown training stage {stage!r}; choose 1 (projectors) or 2 (projectors + LoRA).")
    return int(stage)


def check_targets(targets: str) -> str:
    """A target set (``valid``: second-to-last item, ``test``: last item), validated."""
    if targets not in TARGETS:
        raise ValueError(f"Unknown targets {targets!r}; choose one of {', '.join(TARGETS)}.")
    return targets
