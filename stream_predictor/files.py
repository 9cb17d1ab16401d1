"""Writing files so that a crash, a SIGKILL or a full disk never leaves a half-written one where a reader looks.

`atomic_path(path)` hands out a temporary name beside `path`; when the block ends, the file is synced and renamed over
`path` (a reader sees the old file or the new one, never half of one), and the directory is synced so that the rename
survives a power cut. If the block fails, the temporary file is removed, and a full disk becomes one `DiskFullError`
that says the previous file is intact.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DiskFullError, UserError

FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_disk_full(e: BaseException | None) -> bool:
    """An OSError for a full disk or quota, or a library's error that wraps one (safetensors says 'os error 28')."""
    if e is None:
        return False
    if isinstance(e, OSError) and e.errno in FULL:
        return True
    text = str(e)
    return any(s in text for s in ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122"))


def free_bytes(path: str | Path) -> int:
    """Bytes free to this user on the file system that holds `path` (or its nearest existing parent)."""
    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def low_on_space(file: Path, frames: int, raw_frame_bytes: int, ahead: int = 64) -> int | None:
    """For video writers, which cannot report a full disk: the free bytes if fewer than 1 MiB plus `ahead` more frames
    (sized like those written so far to `file`, or a quarter of a raw frame before any) would need; else None."""
    per_frame = file.stat().st_size / frames if frames and file.exists() else raw_frame_bytes / 4
    free = free_bytes(file.parent)
    return free if free < (1 << 20) + ahead * int(per_frame) else None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """`with atomic_path(p) as tmp: write(tmp)`: then `p` is the complete new file, or is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
        fsync_dir(path.parent)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e) or is_disk_full(e.__cause__) or is_disk_full(e.__context__):
            kept = "the previous one is intact" if path.exists() else "nothing was written"
            raise DiskFullError(f"disk full writing {path} ({free_bytes(path.parent) // 1024} KiB free); {kept}") from None
        raise


def remove_leftovers(path: str | Path) -> list[Path]:
    """Delete what a killed writer of `path` left (its `atomic_path` temporaries); returns them."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp"))
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


class LineFile:
    """Text lines appended to a new file in batches (`write` any number, then `flush`); a batch that fails to reach the
    disk is cut back off, so the file always ends with a whole line. A full disk becomes one `DiskFullError`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._batch: list[str] = []
        self.size = 0  # bytes of whole lines on disk
        self.failed = False

    def write(self, text: str) -> None:
        self._batch.append(text)

    def flush(self) -> None:
        if self.failed or not self._batch:
            return
        data = memoryview("".join(self._batch).encode())
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as e:
            self.failed = True
            os.ftruncate(self._fd, self.size)
            if is_disk_full(e):
                raise DiskFullError(f"disk full writing {self.path}: it keeps its first {self.size} bytes, whole "
                                    f"lines ({free_bytes(self.path.parent) // 1024} KiB free)") from None
            raise
        self.size += len(data.obj)
        self._batch.clear()

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1


def check_writable(path: str | Path) -> None:
    """One-line UserError unless a file can be written at `path`: its folder exists or can be made, and takes a new file.
    Run before any work, so that a bad output path costs nothing."""
    folder = Path(path).expanduser().absolute().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
