"""Prompt templates: 11 per task in the OpenP5 structure, written for this project.

Placeholders: ``{dataset}`` (e.g. "LastFM"), ``{user}`` (one user slot) and, for the
sequential task, ``{history}`` (one slot per history item, comma separated). Templates
0-9 of each task train the model; template 10 is held out and only ever used to test
generalisation to an unseen wording. Training code must get its templates from
:func:`training_templates`, never by index, so the held-out one cannot leak in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASKS = ("sequential", "direct")
NUM_TRAINING_TEMPLATES = 10
UNSEEN = "unseen"


@dataclass(frozen=True)
class Template:
    """One prompt wording.

    Attributes:
        task: ``"sequential"`` or ``"direct"``.
        index: 0-9 for training templates, 10 for the held-out one.
        text: The wording with ``{dataset}``, ``{user}`` and (sequential) ``{history}``.
    """

    task: str
    index: int
    text: str

    @property
    def unseen(self) -> bool:
        return self.index >= NUM_TRAINING_TEMPLATES

    @property
    def name(self) -> str:
        return f"{self.task}-{UNSEEN if self.unseen else self.index}"


_SEQUENTIAL = [
    "{dataset} user {user} has interacted with these items, oldest first: {history}. Which {dataset} item will this user pick next?",
    "Here is the {dataset} history of user {user}: {history}. Predict the item that comes next.",
    "User {user} on {dataset} went through {history} in this order. Name the next item for this user.",
    "Interaction sequence of {dataset} user {user}: {history}. What is the most likely next item?",
    "Below are the items user {user} chose on {dataset}, in time order: {history}. Recommend the item that should follow.",
    "On {dataset}, user {user} engaged with {history}. Which item will the user engage with after these?",
    "Consider {dataset} user {user}, whose recent items are {history}. Guess the next item in the sequence.",
    "Past {dataset} items of user {user}: {history}. Which item does this user want next?",
    "The {dataset} user {user} has this history: {history}. Choose the next item to recommend.",
    "Given that user {user} interacted with {history} on {dataset}, what will they interact with next?",
    # held out (unseen): a different sentence shape, so generalisation is really tested
    "Knowing only the sequence {history} from user {user}, what should {dataset} put in front of them now?",
]

_DIRECT = [
    "Which {dataset} item should be recommended to user {user}?",
    "Pick one item from {dataset} for user {user}.",
    "User {user} is browsing {dataset}. Which item will they like?",
    "Recommend a {dataset} item to user {user}.",
    "What is the best {dataset} item for user {user}?",
    "Suggest an item on {dataset} that user {user} will enjoy.",
    "From the {dataset} catalogue, choose an item for user {user}.",
    "Name a {dataset} item that suits user {user}.",
    "Which item on {dataset} would user {user} interact with?",
    "Find a good {dataset} recommendation for user {user}.",
    # held out (unseen)
    "If {dataset} could show user {user} a single item today, which item should it be?",
]

_ALL = {
    "sequential": tuple(Template("sequential", i, t) for i, t in enumerate(_SEQUENTIAL)),
    "direct": tuple(Template("direct", i, t) for i, t in enumerate(_DIRECT)),
}


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of {TASKS}.")


def all_templates(task: str) -> tuple[Template, ...]:
    """All 11 templates of a task (the last one is the unseen one)."""
    _check_task(task)
    return _ALL[task]


def training_templates(task: str) -> tuple[Template, ...]:
    """The 10 templates training may use."""
    return all_templates(task)[:NUM_TRAINING_TEMPLATES]


def unseen_template(task: str) -> Template:
    """The held-out template (evaluation only)."""
    return all_templates(task)[NUM_TRAINING_TEMPLATES]


def get_template(task: str, which: int | str) -> Template:
    """A template by index (0-9), or ``"unseen"`` / ``"seen"`` (= template 0).

    Raises:
        ValueError: unknown task or index out of range.
    """
    if which == UNSEEN:
        return unseen_template(task)
    if which == "seen":
        which = 0
    index = -1
    if isinstance(which, (int, np.integer)) and not isinstance(which, bool):
        index = int(which)
    elif isinstance(which, str) and which.strip().isdigit() and which.strip().isascii():
        index = int(which)  # "3" from the command line; True or 1.7 would be cast to another template
    if not 0 <= index < NUM_TRAINING_TEMPLATES:
        raise ValueError(
            f"Template {which!r} does not exist: use 0-{NUM_TRAINING_TEMPLATES - 1} or '{UNSEEN}'."
        )
    return all_templates(task)[index]
