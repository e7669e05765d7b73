"""Atomic files: a reader sees the old file or the whole new one, never a part.

Each writer writes its own temporary (host and process in its name, so ranks on several
nodes of a shared file system never share one), fsyncs it and renames it onto the path.
Synthesis jobs, checkpoints' stream positions and cached counts are written this way.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable


def temp_name(path: str) -> str:
    """This process's temporary for `path`: concurrent writers of one file never share one."""
    return f"{path}.tmp-{socket.gethostname()}-{os.getpid()}"


def write_atomic(path: str, write: Callable[[str], None], temp: str | None = None,
                 unless: Callable[[], bool] | None = None) -> bool:
    """`write(temp)`, fsync, then rename onto `path`: readers see the old file or the whole new one.

    When `unless()` is true once the temporary is written (another writer finished first), the
    temporary is dropped and `path` left as it is. On an error the temporary is removed before
    the error propagates. Returns whether `path` was replaced.
    """
    temp = temp or temp_name(path)
    try:
        write(temp)
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
        if unless is not None and unless():  # checked last, so that little can change before the rename
            os.remove(temp)
            return False
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):  # never written, or removed by another process
            os.remove(temp)
        raise
    directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:  # the rename itself must survive a power cut too
        os.fsync(directory)
    finally:
        os.close(directory)
    return True


def write_json(path: str, value) -> None:
    def write(temp: str) -> None:
        with open(temp, "w", encoding="utf-8") as f:
            json.dump(value, f, indent=1, sort_keys=True)

    write_atomic(path, write)
