"""File systems that refuse writes, for the bad-input catalogue: read-only, and full.

Root ignores permission bits, so as root a directory is made read-only by a read-only bind mount
of itself, and a full disk is a small tmpfs filled to the brim (real EROFS and ENOSPC from the
kernel). Without root, ``chmod`` makes a directory non-writable; a full disk needs root.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


def _umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], check=True, capture_output=True, timeout=30)


@contextmanager
def read_only(directory: Path) -> Iterator[str]:
    """``directory`` cannot be written while in the block; yields the error text writes get."""
    if os.geteuid() == 0:
        _mount("--bind", str(directory), str(directory))
        try:
            _mount("-o", "remount,bind,ro", str(directory))
            yield os.strerror(errno.EROFS)
        finally:
            _umount(directory)
        return
    modes = {p: p.stat().st_mode for p in [directory, *directory.rglob("*")] if p.is_dir()}
    for path, mode in modes.items():
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield os.strerror(errno.EACCES)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


class FullDisk:
    """A 1 MiB tmpfs at ``mountpoint``: put files in it, :meth:`fill` it, :meth:`free` it."""

    strerror = os.strerror(errno.ENOSPC)

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        self.filler = mountpoint / "filler"

    def fill(self) -> None:
        """Take every free byte, so the next write that needs space fails with ENOSPC."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 16, 1 << 12, 1 << 9):
                while True:
                    try:
                        os.write(fd, b"\0" * size)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink()


@contextmanager
def full_disk(mountpoint: Path) -> Iterator[FullDisk]:
    """A small tmpfs mounted at ``mountpoint`` (root only: mounting needs it)."""
    if os.geteuid() != 0:
        pytest.skip("a real full file system needs root to mount a tmpfs (CI runs as root)")
    mountpoint.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mountpoint))
    try:
        yield FullDisk(mountpoint)
    finally:
        _umount(mountpoint)
