"""One atomic file writer for every part of perfgen (generator config, rules, backups).

Readers (the proxy, Prometheus on reload) see the old file or the new one, never a mix:
the bytes go to a temporary file in the same directory, are fsynced, get the old file's
mode and owner, and are renamed over the target; the directory is fsynced so the rename
survives a power cut. A crash (kill -9) between the temporary file and the rename leaves
the temporary file behind; its name carries the writer's pid, so the next write removes
those of writers that are no longer running.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write(
    path: str | os.PathLike[str], data: str | bytes, *, backup: bool = True
) -> Path | None:
    """Replace `path` with `data` (text is written as UTF-8); returns the backup's path.

    A symlink is followed (Kubernetes mounts and dotfile managers use them), so the link
    stays and its target is replaced. With `backup`, an existing file is first copied to
    `FILE.bak` the same way (mode and owner kept), so the backup always holds the previous
    complete file. Returns None when no backup was made.
    """
    target = Path(os.path.realpath(path))
    remove_stale_temporaries(target)
    try:
        info: os.stat_result | None = target.stat()
    except FileNotFoundError:
        info = None
    payload = data.encode("utf-8") if isinstance(data, str) else data
    backup_path = target.with_name(target.name + ".bak") if backup and info else None
    if backup_path is not None:
        remove_stale_temporaries(backup_path)
        _write_replace(backup_path, target.read_bytes(), info)
    _write_replace(target, payload, info)
    return backup_path


def _prefix(target: Path) -> str:
    return f".{target.name}."


def remove_stale_temporaries(target: Path) -> list[Path]:
    """Delete temporary files of `target` left by writers that died; returns them."""
    removed: list[Path] = []
    prefix = _prefix(target)
    try:
        candidates = [p for p in target.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for candidate in candidates:
        if not candidate.name.endswith(".tmp") or candidate.name.startswith(prefix + "bak."):
            continue  # FILE.bak has its own temporaries, checked when it is written
        pid_text = candidate.name[len(prefix) :].split(".", 1)[0]
        if pid_text.isdigit() and _running(int(pid_text)):
            continue  # another writer, still at work
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OverflowError:
        return False
    return True


def _write_replace(target: Path, data: bytes, like: os.stat_result | None) -> None:
    fd, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=f"{_prefix(target)}{os.getpid()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if like is not None:
            os.chmod(tmp, like.st_mode & 0o7777)
            # Root running perfgen on the proxy user's file must not steal it.
            with contextlib.suppress(OSError):
                os.chown(tmp, like.st_uid, like.st_gid)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform/filesystem allows it.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
