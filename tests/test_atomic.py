"""perfgen.atomic: the one atomic writer (generator config, rules) and its crash leftovers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from perfgen.atomic import atomic_write, remove_stale_temporaries

# The child writes, and kills itself with SIGKILL right before the rename: the state a
# kill -9 of the generator between temporary file and rename leaves behind.
CRASH = """
import os, sys
from perfgen import atomic
atomic.os.replace = lambda src, dst: os.kill(os.getpid(), 9)
atomic.atomic_write(sys.argv[1], "new\\n")
"""


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_kill_9_before_the_rename_leaves_a_temporary_the_next_run_removes(
    tmp_path: Path,
) -> None:
    target = tmp_path / "config.toml"
    target.write_text("old\n")
    child = subprocess.run([sys.executable, "-c", CRASH, str(target)], check=False)
    assert child.returncode == -9
    assert target.read_text() == "old\n"  # the old file, whole
    left = temporaries(tmp_path)
    assert len(left) == 1 and left[0].startswith(".config.toml.")
    atomic_write(target, "newer\n")
    assert target.read_text() == "newer\n"
    assert temporaries(tmp_path) == []


def test_a_running_writers_temporary_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        mine = tmp_path / f".config.toml.{live.pid}.abcd1234.tmp"
        mine.write_text("in progress")
        dead = tmp_path / ".config.toml.999999999.abcd1234.tmp"
        dead.write_text("stale")
        legacy = tmp_path / ".config.toml.k3j4h5g6.tmp"  # the writer's old naming
        legacy.write_text("stale")
        other = tmp_path / ".other.toml.999999999.x.tmp"  # another file's: not ours
        other.write_text("not ours")
        removed = remove_stale_temporaries(target)
        assert sorted(p.name for p in removed) == sorted([dead.name, legacy.name])
        assert mine.exists() and other.exists()
    finally:
        live.kill()
        live.wait()


def test_the_backup_keeps_owner_and_mode(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    if os.geteuid() == 0:
        os.chown(target, 4242, 4343)  # the proxy's user, not root
    backup = atomic_write(target, "new\n")
    assert backup == tmp_path / "config.toml.bak"
    for path in (target, backup):
        info = path.stat()
        assert info.st_mode & 0o7777 == 0o640
        if os.geteuid() == 0:
            assert (info.st_uid, info.st_gid) == (4242, 4343)
    assert backup.read_text() == "old\n" and target.read_text() == "new\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_owner_is_kept_for_a_file_owned_by_another_user(tmp_path: Path) -> None:
    target = tmp_path / "rules.yml"
    target.write_text("a")
    os.chown(target, 4242, 4343)
    atomic_write(target, "b", backup=False)
    assert (target.stat().st_uid, target.stat().st_gid) == (4242, 4343)
