"""shadow.files: a file is replaced whole or not at all, and no temporary file is left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shadow.files import atomic_write, publish, temp_path


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _write_then_fail(target: Path, error: Exception, *, fsync: bool = True) -> None:
    """Write part of a new content for ``target``, then fail the way a crash-free error does."""
    with atomic_write(target, fsync=fsync) as fh:
        fh.write(b"half of the new")
        raise error


def test_atomic_write_replaces_the_file_with_the_new_content(tmp_path: Path) -> None:
    """On success the target holds exactly the new bytes and the directory nothing else."""
    target = tmp_path / "doc.json"
    target.write_bytes(b"old")
    with atomic_write(target) as fh:
        fh.write(b"new ")
        fh.write(b"content")
    assert target.read_bytes() == b"new content"
    assert _names(tmp_path) == ["doc.json"]


def test_a_failure_mid_write_leaves_the_old_file_intact(tmp_path: Path) -> None:
    """An exception half-way through keeps the old content and removes the temporary file."""
    target = tmp_path / "doc.json"
    target.write_bytes(b"old content")
    with pytest.raises(RuntimeError, match="disk went away"):
        _write_then_fail(target, RuntimeError("disk went away"))
    assert target.read_bytes() == b"old content"
    assert _names(tmp_path) == ["doc.json"]


def test_a_failed_first_write_creates_no_file(tmp_path: Path) -> None:
    """Without an old file, a failed write leaves nothing at all."""
    target = tmp_path / "new.jsonl"
    with pytest.raises(ValueError, match="bad record"):
        _write_then_fail(target, ValueError("bad record"), fsync=False)
    assert _names(tmp_path) == []


def test_a_failing_rename_keeps_the_old_file_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If os.replace itself fails the old file stays and the temporary file is removed."""
    target = tmp_path / "doc.json"
    target.write_bytes(b"old")

    def refuse(src: object, dst: object) -> None:
        raise OSError("EXDEV")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="EXDEV"), atomic_write(target) as fh:
        fh.write(b"new")
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["doc.json"]


def test_a_named_temporary_file_is_used_and_may_be_left_over(tmp_path: Path) -> None:
    """A caller-chosen tmp name is written even if a crash left one there before."""
    target = tmp_path / "seg.offset"
    tmp = tmp_path / "seg.offset.tmp"
    tmp.write_bytes(b"debris")
    with atomic_write(target, tmp=tmp) as fh:
        fh.write(b"42")
    assert target.read_bytes() == b"42"
    assert not tmp.exists()


def test_publish_renames_a_finished_file_over_the_target(tmp_path: Path) -> None:
    """publish moves a file another writer produced into place, replacing the old one."""
    target = tmp_path / "part.parquet"
    target.write_bytes(b"old")
    tmp = temp_path(target)
    tmp.write_bytes(b"new")
    publish(tmp, target)
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == ["part.parquet"]


def test_temp_paths_are_hidden_fresh_and_beside_the_target(tmp_path: Path) -> None:
    """Each temporary name is a dotfile in the target's directory, different every time."""
    first, second = temp_path(tmp_path / "a.json"), temp_path(tmp_path / "a.json")
    assert first != second
    assert first.parent == tmp_path
    assert first.name.startswith(".a.json.")
    assert first.name.endswith(".tmp")
