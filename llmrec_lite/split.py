"""The leave-one-out split (OpenP5's protocol).

For a user with chronological items ``seq``:

- training part: ``seq[:-2]``; every prefix is a training sample
  (history ``seq[:i]``, target ``seq[i]``, for ``1 <= i < len(seq) - 2``);
- validation: history ``seq[:-2]``, target ``seq[-2]``;
- test: history ``seq[:-1]``, target ``seq[-1]``.

Collaborative-filtering models are fitted on the training parts only
(:meth:`LeaveOneOutSplit.train_matrix`), so no validation or test target leaks into
the embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np
import scipy.sparse as sp

from llmrec_lite.data import InteractionData

from llmrec_lite.variants import check_targets


@dataclass(frozen=True)
class Sample:
    """One prediction case: a user, the items before the target, and the target."""

    user: int
    history: np.ndarray
    target: int


@dataclass
class LeaveOneOutSplit:
    """Leave-one-out split of an :class:`InteractionData`.

    Attributes:
        data: The dataset.
        train: Training part ``seq[:-2]`` of every user.
        valid_targets: ``seq[-2]`` per user.
        test_targets: ``seq[-1]`` per user.
    """

    data: InteractionData
    train: list[np.ndarray]
    valid_targets: np.ndarray
    test_targets: np.ndarray

    @classmethod
    def from_data(cls, data: InteractionData) -> "LeaveOneOutSplit":
        return cls(
            data=data,
            train=[s[:-2] for s in data.sequences],
            valid_targets=np.array([s[-2] for s in data.sequences], dtype=np.int64),
            test_targets=np.array([s[-1] for s in data.sequences], dtype=np.int64),
        )

    def earlier(self, steps_back: int) -> "LeaveOneOutSplit":
        """The same users with their last ``steps_back`` items cut off, so that its "test" target
        lies ``steps_back`` items before the real one (1: the validation target; 2: the last
        training target, which models were trained on).

        Two uses: the results chapter's diagnostic of how a model's accuracy changes with the
        target's distance from the training period (models trained on the real split, scored
        on earlier targets), and the tuning record's split (``Run.open(..., steps_back=1)``:
        factors and models trained on this split, scored on its test target, which is the
        real validation target, as far from that training as the real test target is from
        the real training). Neither reads a real test target to choose a setting.

        Raises:
            ValueError: ``steps_back`` is negative, or leaves a user without a history.
        """
        if steps_back < 0:
            raise ValueError(f"steps_back must be 0 or more, got {steps_back}.")
        if steps_back == 0:
            return self
        shortest = min(len(s) for s in self.data.sequences)
        if shortest - steps_back < 2:
            raise ValueError(f"steps_back={steps_back} leaves a user of {shortest} items without a history; "
                             f"use at most {shortest - 2}.")
        data = replace(self.data, sequences=[s[: len(s) - steps_back] for s in self.data.sequences])
        return LeaveOneOutSplit.from_data(data)

    @property
    def num_users(self) -> int:
        return self.data.num_users

    @property
    def num_items(self) -> int:
        return self.data.num_items

    @property
    def num_train_samples(self) -> int:
        """Number of training prefixes: ``len(seq) - 3`` per user."""
        return int(sum(max(len(t) - 1, 0) for t in self.train))

    def check_has_training_prompts(self) -> None:
        """Refuses a split whose training part yields no prompt (a prompt needs a history item
        and the next item, so some user must have at least four items in all).

        Raises:
            ValueError: no user has two training items.
        """
        if self.num_train_samples == 0:
            longest = max((len(s) for s in self.data.sequences), default=0)
            raise ValueError(
                f"{self.data.name}: the training part yields no prompt. Each user's last two items are the "
                "validation and test targets, and a training prompt needs two more (a history item and the next "
                f"item), but the longest user has {longest} item(s). Use data where users have 4 items or more.")

    def train_samples(self) -> Iterator[Sample]:
        """Every training prefix, user by user, in chronological order."""
        for user, part in enumerate(self.train):
            for i in range(1, len(part)):
                yield Sample(user, part[:i], int(part[i]))

    def history(self, user: int, targets: str = "test") -> np.ndarray:
        """Items the model may see when predicting ``user``'s target of the set ``targets``
        (``"test"``: everything but the last item; ``"valid"``: everything but the last two)."""
        seq = self.data.sequences[user]
        return seq[:-1] if check_targets(targets) == "test" else seq[:-2]

    def target_items(self, targets: str = "test") -> np.ndarray:
        """Target item of every user in the set ``targets`` (``"valid"`` or ``"test"``)."""
        return self.test_targets if check_targets(targets) == "test" else self.valid_targets

    # the name chapters and older code use
    targets = target_items

    def samples(self, targets: str = "test") -> list[Sample]:
        """One evaluation case per user for the set ``targets``."""
        items = self.target_items(targets)
        return [Sample(u, self.history(u, targets), int(items[u])) for u in range(self.num_users)]

    def train_matrix(self) -> sp.csr_matrix:
        """Users x items interaction counts over the training parts only (float32 CSR)."""
        rows = np.concatenate([np.full(len(t), u) for u, t in enumerate(self.train)])
        cols = np.concatenate(self.train)
        values = np.ones(len(cols), dtype=np.float32)
        # duplicates are summed: r_ui counts repeated interactions
        matrix = sp.csr_matrix((values, (rows, cols)), shape=(self.num_users, self.num_items))
        matrix.sum_duplicates()
        return matrix

    def stats(self) -> dict:
        """Counts of the split (the ``data`` command prints them)."""
        return {
            "train_interactions": int(sum(len(t) for t in self.train)),
            "train_samples": self.num_train_samples,
            "valid": int(len(self.valid_targets)),
            "test": int(len(self.test_targets)),
        }
