"""Interaction data: parsers, the 5-core filter, item indexing and statistics.

Three on-disk formats are read:

- **S3Rec** (LastFM, Beauty, and any file of yours in the same format): one user per
  line, ``user_id item_id item_id ...``, positive integers, items oldest first.
- **MovieLens-1M** (``ml-1m.zip``): ``ratings.dat`` with ``UserID::MovieID::Rating::Timestamp``;
  every rating is an interaction, an iterative 5-core filter is applied and each user's
  items are sorted by timestamp (OpenP5's processing; ties keep the file's order).
- **MovieLens-100K** (``u.data``): ``user<TAB>item<TAB>rating<TAB>timestamp`` in no order;
  processed as MovieLens-1M, with ties in time ordered by item id.

After parsing, users and items are renumbered. Inside the package every user and item
is a 0-based *index* (rows and columns of matrices). The ids the prompts show are
derived from the index: user ``u`` is ``user_{u+1}``, item ``i`` is ``item_{1001+i}``.
The *indexing* decides which item gets which index: ``sequential`` numbers items in
order of first appearance over the users' training parts (then the rest), ``random``
shuffles them with a seed. Consecutive ids leak co-occurrence information to a text
model (a known P5 trap), so every result names its indexing.
"""

from __future__ import annotations

import io
import json
import os
import re
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmrec_lite import registry

FIRST_ITEM_ID = 1001
INDEXINGS = ("sequential", "random")


class DataFormatError(ValueError):
    """A data file does not follow its format; the message names file and line."""


@dataclass
class InteractionData:
    """Chronological item sequences of every user, with users and items indexed.

    Attributes:
        name: Dataset name (registry key, or the file stem for a user-supplied file).
        display_name: Name used in prompts ("LastFM").
        sequences: One int64 array of item indices per user, oldest first.
        raw_user_ids: Original user id of each user index.
        raw_item_ids: Original item id of each item index.
        indexing: ``"sequential"`` or ``"random"``.
        seed: Seed used by random indexing (recorded for every indexing).
        source: Path of the file the data came from.
        sha256: sha256 of that file (a run refuses another file under the same name).
        registered: Loaded by registry name (``False``: a file given by path, wherever it lies).
    """

    name: str
    display_name: str
    sequences: list[np.ndarray]
    raw_user_ids: np.ndarray
    raw_item_ids: np.ndarray
    indexing: str
    seed: int
    source: str = ""
    sha256: str = ""
    registered: bool = False

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_items(self) -> int:
        return len(self.raw_item_ids)

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    @property
    def num_pairs(self) -> int:
        """Distinct (user, item) pairs (an item repeated in one user's sequence counts once)."""
        return int(sum(len(np.unique(s)) for s in self.sequences))

    def user_id(self, user: int) -> int:
        """The user id shown in prompts (1-based)."""
        return int(user) + 1

    def item_id(self, item: int) -> int:
        """The item id shown in prompts (from 1001)."""
        return int(item) + FIRST_ITEM_ID

    def item_text(self, item: int) -> str:
        """The item as the prompts write it, e.g. ``"LastFM item_1024"``."""
        return f"{self.display_name} item_{self.item_id(item)}"

    def item_popularity(self, sequences: list[np.ndarray] | None = None) -> np.ndarray:
        """Interaction count per item index (over ``sequences``, default all)."""
        seqs = self.sequences if sequences is None else sequences
        counts = np.zeros(self.num_items, dtype=np.int64)
        if seqs:
            np.add.at(counts, np.concatenate(seqs), 1)
        return counts

    def stats(self) -> dict:
        """Dataset statistics (counts, density, sequence lengths)."""
        lengths = np.array([len(s) for s in self.sequences])
        interactions = int(lengths.sum())
        return {
            "dataset": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": interactions,
            # distinct (user, item) pairs: an item repeated in one user's line fills one cell of the matrix
            "density": self.num_pairs / (self.num_users * self.num_items),
            "avg_sequence_length": float(lengths.mean()),
            "median_sequence_length": float(np.median(lengths)),
            "min_sequence_length": int(lengths.min()),
            "max_sequence_length": int(lengths.max()),
            "indexing": self.indexing,
        }


# --------------------------------------------------------------------------- names

MAX_NAME_LENGTH = 40
_NAME_PUNCTUATION = frozenset(" -_.,&'+()/")
_ID_WORDS = re.compile(r"(item|user)_", re.IGNORECASE)


def check_display_name(name: str, what: str = "--name") -> str:
    """Refuses a dataset name that would change the prompts' wording rather than name a dataset.

    The name is written into every prompt and into every answer (``"<name> item_1024"``), so
    it must be one short line of letters, digits and a little punctuation, and must not
    contain ``item_`` or ``user_`` (the ids' own words).

    Raises:
        ValueError: the name, what is wrong with it and what to pass instead.
    """
    bad = next((c for c in name if not (c.isalnum() or c in _NAME_PUNCTUATION)), None)
    problem = None
    if not name.strip() or not any(c.isalnum() for c in name):
        problem = "it has no letter or digit"
    elif len(name) > MAX_NAME_LENGTH:
        problem = f"it is {len(name)} characters long (at most {MAX_NAME_LENGTH})"
    elif bad is not None:
        problem = f"it contains {bad!r}"
    elif _ID_WORDS.search(name):
        problem = "it contains 'item_' or 'user_', the words of the ids in every prompt"
    if problem:
        raise ValueError(
            f"{what} {name!r} cannot name a dataset in prompts: {problem}. Use one short line of letters, digits, "
            f"spaces and {''.join(sorted(_NAME_PUNCTUATION - {' '}))}, e.g. --name MyShop."
        )
    return name


# --------------------------------------------------------------------------- parsers


def parse_s3rec(path: str | os.PathLike) -> dict[int, list[int]]:
    """Reads an S3Rec-format file into ``{user_id: [item_id, ...]}`` (file order kept).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: a non-integer or non-positive id, a user without items, or a
            user listed twice; the message names the file and the line.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No such data file: {path}")
    users: dict[int, list[int]] = {}
    for line_no, line in enumerate(_text_lines(path), start=1):
        control = next((c for c in line if c not in SEPARATORS and (c.isspace() or not c.isprintable())), None)
        if control is not None:
            raise DataFormatError(
                f"{path}, line {line_no}: the character {ord(control):#06x} ({_char_name(control)}) "
                "is not a separator. Separate ids with spaces or tabs only, one user per line."
            )
        fields = line.split()
        if not fields:
            continue  # blank lines (e.g. a trailing newline) carry nothing
        bad = next((f for f in fields if not _is_int(f)), None)
        if bad is not None:
            raise DataFormatError(
                f"{path}, line {line_no}: {bad!r} is not an integer id. Each line must be "
                "'user_id item_id item_id ...' with positive integers (digits 0-9, no leading 0 or +, so that one "
                "id has one spelling) separated by spaces."
            )
        ids = [int(f) for f in fields]
        if min(ids) <= 0:
            raise DataFormatError(
                f"{path}, line {line_no}: ids must be positive integers, found {min(ids)}."
            )
        if max(ids) > MAX_ID:
            raise DataFormatError(
                f"{path}, line {line_no}: id {max(ids)} is too large (ids must fit in 64 bits, at most {MAX_ID})."
            )
        user, items = ids[0], ids[1:]
        if not items:
            raise DataFormatError(f"{path}, line {line_no}: user {user} has no items.")
        if user in users:
            raise DataFormatError(
                f"{path}, line {line_no}: user {user} appears a second time; "
                "each user must be on one line."
            )
        users[user] = items
    if not users:
        raise DataFormatError(f"{path}: the file holds no interactions.")
    return users


MAX_ID = 2**63 - 1
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _text_lines(path: Path) -> list[str]:
    """The file's lines as text: UTF-8 (a byte-order mark is dropped), with a clear error
    for UTF-16 and binary files instead of a codec traceback."""
    raw = path.read_bytes()
    if raw.startswith(UTF16_BOMS) or (len(raw) > 1 and b"\x00" in raw[:2] and raw.count(b"\x00") > len(raw) // 4):
        raise DataFormatError(
            f"{path}: the file is UTF-16 encoded. Save it as UTF-8 (or plain ASCII): one line per user, "
            "'user_id item_id item_id ...'."
        )
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark carries no data
    nul = raw.find(b"\x00")
    try:
        text = raw.decode("utf-8") if nul < 0 else None
    except UnicodeDecodeError as err:
        nul = err.start
        text = None
    if text is None:
        line_no = raw[:nul].count(b"\n") + 1
        raise DataFormatError(
            f"{path}, line {line_no}: byte {nul} is not text (a binary or non-UTF-8 file?). The S3Rec format "
            "is a text file, one line per user: 'user_id item_id item_id ...' with positive integers."
        )
    # str.splitlines() also splits on form feeds, vertical tabs and Unicode separators, which would
    # turn one user's line into two users; a line ends at "\n" only ("\r\n" files included)
    lines = text.split("\n")
    return [line[:-1] if line.endswith("\r") else line for line in lines]


SEPARATORS = frozenset(" \t")
_CONTROL_NAMES = {"\x0b": "vertical tab", "\x0c": "form feed", "\r": "carriage return", "\x1c": "file separator",
                  "\x1d": "group separator", "\x1e": "record separator", "\x85": "next line"}


def _char_name(char: str) -> str:
    return _CONTROL_NAMES.get(char) or unicodedata.name(char, "a control character").lower()
_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")


def _is_int(text: str) -> bool:
    """An integer in one spelling, ASCII digits: ``int()`` alone would also take ``1_0`` (as 10),
    ``025`` and ``+25`` (as 25) and digits of other scripts (Arabic-Indic ``١٠``), merging
    them with another id."""
    return _INTEGER.fullmatch(text) is not None


def parse_ml1m_ratings(lines, source: str = "ratings.dat") -> list[tuple[int, int, int]]:
    """Parses ``UserID::MovieID::Rating::Timestamp`` lines into (user, item, time) triples.

    Raises:
        DataFormatError: a line without four ``::``-separated integer fields.
    """
    triples = []
    for line_no, line in enumerate(lines, start=1):
        if isinstance(line, bytes):
            line = line.decode("latin-1")
        line = line.strip()
        if not line:
            continue
        parts = line.split("::")
        if len(parts) != 4 or not all(_is_int(p) for p in parts):
            raise DataFormatError(
                f"{source}, line {line_no}: expected 'UserID::MovieID::Rating::Timestamp' "
                f"with integers, got {line[:80]!r}."
            )
        user, item, _rating, ts = (int(p) for p in parts)
        triples.append((user, item, ts))
    return triples


def parse_ml100k(path: str | os.PathLike) -> dict[int, list[int]]:
    """Reads MovieLens-100K's ``u.data`` (``user<TAB>item<TAB>rating<TAB>unix time``, one rating a
    line, in no particular order): every rating an interaction, iterative 5-core, each user's
    items by time.

    Many of a user's ratings share one second (ratings entered in one sitting). The file's line
    order says nothing about them, so ties are ordered by item id, ascending: a rule that does
    not depend on how the file happens to be sorted.

    Raises:
        DataFormatError: a line without four tab-separated integers; the message names the line.
    """
    path = Path(path)
    triples = []
    for line_no, line in enumerate(_text_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 4 or not all(_is_int(p.strip()) for p in parts):
            raise DataFormatError(f"{path}, line {line_no}: expected 'user<TAB>item<TAB>rating<TAB>timestamp' with "
                                  f"integers (MovieLens-100K's u.data), got {line[:80]!r}.")
        user, item, _rating, ts = (int(p) for p in parts)
        triples.append((user, item, ts))
    if not triples:
        raise DataFormatError(f"{path}: the file holds no ratings.")
    # sorting by item first makes the stable sort by time in sequences_from_triples break ties by item
    triples.sort(key=lambda t: (t[0], t[1]))
    return sequences_from_triples(_five_core_of(triples, path))


def _five_core_of(triples, source) -> list[tuple[int, int, int]]:
    kept = five_core(triples)
    if not kept:
        raise DataFormatError(f"{source}: no user and item keep 5 interactions under the iterative 5-core filter, "
                              "so nothing is left to recommend from.")
    return kept


def five_core(triples: list[tuple[int, int, int]], k: int = 5) -> list[tuple[int, int, int]]:
    """Iteratively drops users and items with fewer than ``k`` interactions."""
    while True:
        user_counts = Counter(t[0] for t in triples)
        item_counts = Counter(t[1] for t in triples)
        kept = [t for t in triples if user_counts[t[0]] >= k and item_counts[t[1]] >= k]
        if len(kept) == len(triples):
            return kept
        triples = kept


def sequences_from_triples(triples: list[tuple[int, int, int]]) -> dict[int, list[int]]:
    """Groups (user, item, time) triples into time-ordered sequences, users sorted by id.

    Ties in time keep file order (a stable sort), as OpenP5's preprocessing does.
    """
    by_user: dict[int, list[tuple[int, int]]] = {}
    for user, item, ts in triples:
        by_user.setdefault(user, []).append((ts, item))
    return {
        user: [item for _, item in sorted(events, key=lambda e: e[0])]
        for user, events in sorted(by_user.items())
    }


def read_ml1m_zip(path: str | os.PathLike) -> dict[int, list[int]]:
    """Reads ``ml-1m.zip`` (``ml-1m/ratings.dat`` inside), applies 5-core, orders by time."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist() if n.endswith("ratings.dat")), None)
            if member is None:
                raise DataFormatError(f"{path}: no ratings.dat inside the archive.")
            with archive.open(member) as fh:
                triples = parse_ml1m_ratings(io.TextIOWrapper(fh, encoding="latin-1"), f"{path}:{member}")
    except zipfile.BadZipFile as err:
        raise DataFormatError(f"{path} is not a valid zip archive ({err}). Delete it and download again.") from err
    return sequences_from_triples(_five_core_of(triples, path))


# --------------------------------------------------------------------------- indexing


def item_order(user_items: list[list[int]], indexing: str = "sequential", seed: int = 0) -> list[int]:
    """Decides which raw item gets which index.

    Args:
        user_items: Raw item sequences, one per user, in user order.
        indexing: ``"sequential"``: order of first appearance over the training parts
            (``seq[:-2]``, users in order), then the items met only in validation/test
            targets, in order of appearance; ``"random"``: a seeded shuffle.
        seed: Seed of the random indexing.

    Returns:
        Raw item ids, position = index.
    """
    if indexing not in INDEXINGS:
        raise ValueError(f"Unknown indexing {indexing!r}; choose one of {INDEXINGS}.")
    seen: dict[int, None] = {}
    for seq in user_items:
        for item in seq[:-2]:
            seen.setdefault(item, None)
    for seq in user_items:
        for item in seq:
            seen.setdefault(item, None)
    order = list(seen)
    if indexing == "random":
        rng = np.random.default_rng(seed)
        order = [order[i] for i in rng.permutation(len(order))]
    return order


def build(
    raw: dict[int, list[int]],
    name: str,
    display_name: str,
    indexing: str = "sequential",
    seed: int = 0,
    source: str = "",
    min_length: int = 3,
) -> InteractionData:
    """Indexes raw sequences into an :class:`InteractionData`.

    Raises:
        DataFormatError: a user has fewer than ``min_length`` interactions (leave-one-out
            needs at least one training item plus a validation and a test target).
    """
    short = [u for u, items in raw.items() if len(items) < min_length]
    if short:
        raise DataFormatError(
            f"{source or name}: {len(short)} user(s) have fewer than {min_length} interactions "
            f"(first: user {short[0]} with {len(raw[short[0]])}). Leave-one-out needs a training "
            "item, a validation and a test target per user: apply a 5-core filter first."
        )
    user_ids = list(raw)
    order = item_order([raw[u] for u in user_ids], indexing=indexing, seed=seed)
    index_of = {item: i for i, item in enumerate(order)}
    sequences = [np.array([index_of[i] for i in raw[u]], dtype=np.int64) for u in user_ids]
    return InteractionData(
        name=name,
        display_name=display_name,
        sequences=sequences,
        raw_user_ids=np.array(user_ids, dtype=np.int64),
        raw_item_ids=np.array(order, dtype=np.int64),
        indexing=indexing,
        seed=seed,
        source=source,
    )


def load_dataset(
    name: str | None = None,
    path: str | os.PathLike | None = None,
    indexing: str = "sequential",
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    display_name: str | None = None,
) -> InteractionData:
    """Loads a registered dataset by name, or an S3Rec-format file by path.

    Args:
        name: Registry key (``lastfm``, ``beauty``, ``ml1m``, ``ml100k``).
        path: A file in the S3Rec format, an ``ml-1m.zip``-style archive, or a file named
            ``u.data`` in MovieLens-100K's format.
        indexing: ``"sequential"`` or ``"random"`` (see the module docstring).
        seed: Seed of the random indexing.
        data_dir: Cache directory (default: ``LLMREC_DATA_DIR`` or ``~/.cache/llmrec_lite/data``).
        display_name: The name prompts use ("LastFM"); default: the registry's, or the file's stem.

    Returns:
        The indexed dataset. Registered datasets carry their item attributes when the
        registry lists an attribute file.
    """
    if (name is None) == (path is None):
        raise ValueError("Pass exactly one of name (a registered dataset) or path (a file).")
    if display_name is not None:
        check_display_name(display_name)
    if path is not None:
        path = Path(path).resolve() if Path(path).exists() else Path(path)
        if not path.exists():
            raise FileNotFoundError(f"No such data file: {path}")
        if path.is_dir():
            raise IsADirectoryError(f"--path {path} is a folder: give the data file itself (S3Rec text or a zip).")
        if display_name is None:
            check_display_name(path.stem, "the file's name (the default --name)")
        # by the name GroupLens gives each format; anything else is read as S3Rec text
        parser = read_ml1m_zip if path.suffix == ".zip" else parse_ml100k if path.name == "u.data" else parse_s3rec
        raw = parser(path)
        data = build(raw, path.stem, display_name or path.stem, indexing, seed, source=str(path))
    else:
        info = registry.get_info(name)
        file = registry.fetch(info.name, data_dir, "interactions")
        raw = {"s3rec": parse_s3rec, "ml1m": read_ml1m_zip, "ml100k": parse_ml100k}[info.fmt](file)
        data = build(raw, info.name, display_name or info.display_name, indexing, seed, source=str(file))
        data.registered = True
        algorithm, digest = info.interactions.checksum
        if algorithm == "sha256":  # fetch has just verified the file against this digest
            data.sha256 = digest
            return data
    data.sha256 = registry.file_digest(data.source)
    return data


def load_attributes(data: InteractionData, data_dir: str | os.PathLike | None = None) -> dict[int, list[int]]:
    """Item attributes ``{item index: [attribute id, ...]}`` of a registered dataset.

    Attributes are side information (tags for LastFM, categories and brand for Beauty);
    the method itself does not use them, the embedding explorer colours by them.
    """
    info = registry.get_info(data.name)
    file = registry.fetch(info.name, data_dir, "attributes")
    raw = {int(k): v for k, v in json.loads(Path(file).read_text()).items()}
    return {i: sorted(set(raw.get(int(r), []))) for i, r in enumerate(data.raw_item_ids)}
