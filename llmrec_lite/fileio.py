"""Small file helpers: every file the package writes appears whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

# Below this much free space a failed write is taken to be a full disk: torch.save reports one
# as "[enforce fail at inline_container.cc...]" with no errno to read.
LOW_SPACE_BYTES = 1 << 20


class DiskFullError(OSError):
    """A write failed because the disk is full; the message names the folder and the fix."""

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.ENOSPC


def is_disk_full(err: BaseException, folder: str | os.PathLike) -> bool:
    """Whether ``err``, raised while writing into ``folder``, comes from a full disk."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if "No space left" in str(seen) or "os error 28" in str(seen):  # safetensors' Rust I/O error
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        existing = next(p for p in (Path(folder), *Path(folder).parents) if p.exists())
        return shutil.disk_usage(existing).free < LOW_SPACE_BYTES
    except (OSError, StopIteration):
        return False


@contextlib.contextmanager
def disk_guard(folder: str | os.PathLike, cleanup: str | os.PathLike | None = None) -> Iterator[None]:
    """Turns a failed write into :class:`DiskFullError` when the disk is full, and removes
    ``cleanup`` (a temporary folder) on any failure, so that no partial folder stays behind."""
    try:
        yield
    except Exception as err:
        full = is_disk_full(err, folder)  # read before the cleanup frees the partial files
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
        if full:
            raise DiskFullError(
                f"The disk that holds {folder} is full: a file could not be written there (no partial file was kept). Free some space (df -h shows how "
                "much is left) or choose another output folder, then run the command again (an interrupted training "
                "stage continues with --resume)."
            ) from err
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path next to ``path``; renames it onto ``path`` on success.

    A crash or an exception leaves no half-written file at ``path`` (the temporary
    file is removed), because :func:`os.replace` is atomic on one file system.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp creates 0600; the finished file gets the mode any other new file would (0644 under
    # the usual umask), so a shared data directory or another user can read it
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp = Path(tmp)
    try:
        with disk_guard(path.parent):
            yield tmp
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, obj, indent: int = 2) -> Path:
    """Writes ``obj`` as JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent, sort_keys=False) + "\n")
    return Path(path)


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(path: str | os.PathLike, what: str, is_dir: bool = False) -> Path:
    """Fails early, before any expensive work, when ``path`` cannot be written.

    Args:
        path: A file (its folder must exist) or, with ``is_dir``, a folder (created later if
            missing; its nearest existing parent must be writable).
        what: What the path is for, named in the message (e.g. ``"--dump-rankings"``).

    Raises:
        FileNotFoundError: a file's folder does not exist.
        PermissionError: the folder (or its nearest existing parent) is not writable.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise FileNotFoundError(f"{what} {path} is a symbolic link to {os.readlink(path)}, which does not exist. "
                                "Create what it points to, remove the link, or choose another place.")
    if is_dir:
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            raise NotADirectoryError(f"{what} {path}: {existing} is a file, not a folder.")
    else:
        existing = path.parent
        if not existing.is_dir():
            raise FileNotFoundError(f"{what} {path}: the folder {existing} does not exist; create it first.")
        if path.is_dir():
            raise IsADirectoryError(f"{what} {path} is a folder; give a file name.")
    try:  # a real write: permission bits say nothing for root or on a read-only file system
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise PermissionError(f"{what} {path}: cannot write in {existing} ({err.strerror}); choose another place.") from err
    return path
