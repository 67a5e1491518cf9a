"""Replacing a file atomically and durably: readers see the old file or the new one, never half.

The one way shadow does it: write a temporary file in the same directory (a rename is atomic
only within one file system), fsync it, ``os.replace`` it over the target, then fsync the
directory so the rename itself survives a power cut. :func:`atomic_write` does all of it around
a file object; :func:`publish` does the last steps for a file another writer (DuckDB's ``COPY``)
produced under a temporary name. This module imports nothing from shadow, so any layer may use it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "fsync_path", "publish", "temp_path"]


def temp_path(path: str | os.PathLike[str]) -> Path:
    """A fresh hidden name beside ``path`` (``.NAME.<pid>.<random>.tmp``) to write it under."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's or a directory's data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(
    tmp: str | os.PathLike[str], final: str | os.PathLike[str], *, fsync: bool = True
) -> None:
    """Rename the finished file ``tmp`` over ``final``, syncing it first and the directory after.

    With ``fsync=False`` the rename is still atomic against a process crash, not a power cut.
    """
    final = Path(final)
    if fsync:
        fsync_path(tmp)
    os.replace(tmp, final)
    if fsync:
        fsync_path(final.parent)


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    *,
    fsync: bool = True,
    tmp: str | os.PathLike[str] | None = None,
    buffering: int = -1,
) -> Iterator[BinaryIO]:
    """Open a temporary file to write ``path``'s new content; it replaces ``path`` on success.

    If the block raises, the temporary file is removed and ``path`` keeps its old content.
    ``tmp`` names the temporary file when the caller must recognise it later (crash debris);
    by default it is a fresh :func:`temp_path`, created exclusively. The file gets the mode
    the umask gives, as a plain ``open`` would (``mkstemp`` would make it 0600).
    """
    path = Path(path)
    tmp_path = temp_path(path) if tmp is None else Path(tmp)
    try:
        with tmp_path.open("xb" if tmp is None else "wb", buffering=buffering) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_path(path.parent)
