"""scripts/test.sh runs every check, in order, and the first that fails stops the run.

Run on a copy of the repository whose .venv is this one (a symlink), so the real scripts
and tools run: the copy gets one planted problem at a time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAMP = ROOT / ".venv" / ".perfgen-test-installed"
# What scripts/lib.sh would otherwise apt-get install (one of each alternative).
COMMANDS = (
    ("prometheus",),
    ("promtool",),
    ("alertmanager", "prometheus-alertmanager"),
    ("amtool",),
    ("victoria-metrics", "victoria-metrics-prod"),
    ("vmalert", "vmalert-prod"),
    ("docker-compose",),
)

pytestmark = pytest.mark.slow


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    if not STAMP.exists():
        pytest.skip("needs .venv installed by scripts/test.sh (its stamp file)")
    if not all(any(shutil.which(c) for c in options) for options in COMMANDS):
        pytest.skip("scripts/test.sh would install Debian packages first")
    dest = tmp_path / "repo"
    skip = shutil.ignore_patterns("__pycache__", ".venv", ".git", "build", "*.egg-info", ".*_cache")
    shutil.copytree(ROOT, dest, ignore=skip, symlinks=True)
    (dest / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    # Older than the install stamp: lib.sh must not reinstall .venv from the copy.
    stamp_time = STAMP.stat().st_mtime
    os.utime(dest / "pyproject.toml", (stamp_time - 1, stamp_time - 1))
    tests = dest / "tests"
    shutil.rmtree(tests)
    tests.mkdir()
    (tests / "test_one.py").write_text("def test_one() -> None:\n    assert 1 + 1 == 2\n")
    return dest


def _run(repo: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(
        ["bash", "scripts/test.sh", "-q", "-p", "no:cacheprovider"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_check_passes_then_pytest_runs(copy: Path) -> None:
    done = _run(copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout  # mypy ran
    assert "1 passed" in done.stdout


@pytest.mark.parametrize(
    ("path", "text", "check", "finding"),
    [
        ("perfgen/planted.py", "import os\n", "ruff check", "F401"),
        ("perfgen/planted.py", "VALUE = {'a':1}\n", "ruff format --check", "planted.py"),
        # Named by its repository path, not the symlink tree's.
        (
            "exporter/planted.py",
            "def half(value: int) -> int:\n    return value / 2\n",
            "mypy",
            "exporter/planted.py:2: error",
        ),
    ],
    ids=["lint", "format", "types"],
)
def test_the_first_failing_check_stops_the_run(
    copy: Path, path: str, text: str, check: str, finding: str
) -> None:
    (copy / path).write_text(text)
    done = _run(copy)
    assert done.returncode != 0
    assert f"scripts/test.sh: {check} failed" in done.stderr
    assert finding in done.stdout + done.stderr
    assert "passed" not in done.stdout  # pytest never started
