"""The dataset registry: public URLs, sha256 checksums and a download cache.

Every dataset is a few files fetched from a public URL into a cache directory and
checked against a sha256 digest before use (the d2l "data hub" pattern). The cache
directory comes from, in order: an explicit ``data_dir`` argument, the environment
variable ``LLMREC_DATA_DIR``, then ``~/.cache/llmrec_lite/data``. Pointing
``LLMREC_DATA_DIR`` at a folder that already holds the files (laid out as
``<dataset>/<file>``) turns it into a pre-filled cache: nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from llmrec_lite.fileio import atomic_path

DATA_DIR_ENV = "LLMREC_DATA_DIR"

_S3REC = "https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/master/data"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it comes from and what it must hash to.

    Attributes:
        name: File name inside the dataset's cache folder.
        url: Public download URL.
        sha256: Expected sha256 hex digest, or ``None`` where only an md5 is published.
        md5: Expected md5 hex digest, for sources that publish md5 only (GroupLens).
    """

    name: str
    url: str
    sha256: str | None
    md5: str | None = None

    @property
    def checksum(self) -> tuple[str, str]:
        """The (algorithm, hex digest) pair the file is checked against."""
        if self.sha256:
            return "sha256", self.sha256
        if self.md5:
            return "md5", self.md5
        raise ValueError(f"{self.name}: the registry entry names no checksum")


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry.

    Attributes:
        name: Registry key (``lastfm``, ``beauty``, ``ml1m``).
        display_name: The name the prompts use ("LastFM item_1024").
        folder: Sub-folder of the cache directory.
        fmt: ``"s3rec"``, ``"ml1m"`` or ``"ml100k"``: which parser reads the interactions file.
        interactions: The file holding the interactions.
        attributes: Optional item-attribute file.
        source: Where the data comes from (for the book's data table).
    """

    name: str
    display_name: str
    folder: str
    fmt: str
    interactions: RemoteFile
    attributes: RemoteFile | None = None
    source: str = ""
    extra: tuple[RemoteFile, ...] = field(default_factory=tuple)

    @property
    def files(self) -> tuple[RemoteFile, ...]:
        files = (self.interactions,) + ((self.attributes,) if self.attributes else ())
        return files + self.extra


DATASETS: dict[str, DatasetInfo] = {
    "lastfm": DatasetInfo(
        name="lastfm",
        display_name="LastFM",
        folder="lastfm",
        fmt="s3rec",
        interactions=RemoteFile(
            "LastFM.txt",
            f"{_S3REC}/LastFM.txt",
            "9ded486adb5b0fe9dc761950afa0a9a05e93ff018992e0c52bf11afec529f802",
        ),
        attributes=RemoteFile(
            "LastFM_item2attributes.json",
            f"{_S3REC}/LastFM_item2attributes.json",
            "a4ccd678dc9ff6d43fe5073f491db5c9b02eb98dfa4f8c0382913a784be217ef",
        ),
        source="Last.fm (HetRec 2011), 5-core, as preprocessed by S3-Rec (CIKM 2020)",
    ),
    "beauty": DatasetInfo(
        name="beauty",
        display_name="Beauty",
        folder="beauty",
        fmt="s3rec",
        interactions=RemoteFile(
            "Beauty.txt",
            f"{_S3REC}/Beauty.txt",
            "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
        ),
        attributes=RemoteFile(
            "Beauty_item2attributes.json",
            f"{_S3REC}/Beauty_item2attributes.json",
            "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
        ),
        source="Amazon reviews, Beauty category (McAuley et al.), 5-core, as preprocessed by S3-Rec",
    ),
    "ml1m": DatasetInfo(
        name="ml1m",
        display_name="ML1M",
        folder="ml1m",
        fmt="ml1m",
        # GroupLens publishes an md5 digest (ml-1m.zip.md5) for this archive, not a sha256.
        interactions=RemoteFile(
            "ml-1m.zip",
            "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
            sha256=None,
            md5="c4d9eecfca2ab87c1945afe126590906",
        ),
        source="MovieLens-1M (GroupLens), every rating an interaction, iterative 5-core",
    ),
    "ml100k": DatasetInfo(
        name="ml100k",
        display_name="MovieLens",
        folder="ml100k",
        fmt="ml100k",
        # GroupLens serves u.data on its own; this sha256 is the one other projects pin too
        interactions=RemoteFile(
            "u.data",
            "https://files.grouplens.org/datasets/movielens/ml-100k/u.data",
            "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
        ),
        source="MovieLens-100K (GroupLens), every rating an interaction, iterative 5-core, ties in time by item id",
    ),
}


class ChecksumError(RuntimeError):
    """A file's sha256 digest differs from the registry's."""


def data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Returns the cache directory (see the module docstring for the order)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "llmrec_lite" / "data"


def get_info(name: str) -> DatasetInfo:
    """Looks a dataset up in the registry.

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        known = ", ".join(sorted(DATASETS))
        raise KeyError(
            f"Unknown dataset {name!r}. Known datasets: {known}. "
            "For your own file in the S3Rec format (one user per line: user item item ...), "
            "pass its path instead (--path FILE)."
        )
    return DATASETS[key]


def file_digest(path: str | os.PathLike, chunk_size: int = 1 << 20, algorithm: str = "sha256") -> str:
    """Hex digest of a file (sha256 unless ``algorithm`` says otherwise), read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, dest: Path, checksum: tuple[str, str]) -> None:
    """Downloads ``url`` to ``dest`` through a temporary file; checks the digest first."""
    algorithm, expected = checksum
    with atomic_path(dest) as tmp:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        got = file_digest(tmp, algorithm=algorithm)
        if got != expected:
            # Raising inside atomic_path deletes the temporary file: nothing corrupt is cached.
            raise ChecksumError(
                f"Checksum mismatch for {url}: expected {algorithm} {expected}, got {got}. "
                f"Nothing was written to {dest}. The file on the server may have changed or the "
                "download was corrupted; try again, or report the new digest."
            )


def fetch(name: str, data_dir_: str | os.PathLike | None = None, which: str = "interactions") -> Path:
    """Returns the local path of one file of a registered dataset, downloading it if needed.

    Args:
        name: Registry key.
        data_dir_: Cache directory (default: see :func:`data_dir`).
        which: ``"interactions"`` or ``"attributes"``.

    Returns:
        Path to a file whose digest matches the registry.

    Raises:
        KeyError: unknown dataset or no such file for it.
        ChecksumError: the cached or downloaded file does not match its digest.
    """
    info = get_info(name)
    remote = getattr(info, which, None)
    if remote is None:
        raise KeyError(f"Dataset {info.name!r} has no {which} file.")
    path = data_dir(data_dir_) / info.folder / remote.name
    if path.exists():
        algorithm, expected = remote.checksum
        got = file_digest(path, algorithm=algorithm)
        if got != expected:
            raise ChecksumError(
                f"Checksum mismatch for cached file {path}: expected {algorithm} {expected}, "
                f"got {got}. Delete the file so that it is downloaded again, or point "
                f"{DATA_DIR_ENV} at a folder with the original files."
            )
        return path
    try:
        _download(remote.url, path, remote.checksum)
    except OSError as err:  # ChecksumError is not an OSError: it propagates as it is
        raise FileNotFoundError(
            f"{path} is not in the data cache and downloading it from {remote.url} failed ({err}). "
            f"Without internet access, set {DATA_DIR_ENV} to a folder holding "
            f"{info.folder}/{remote.name}."
        ) from err
    return path
