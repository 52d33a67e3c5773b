"""The version in one place: pyproject.toml -> installed metadata -> --version, build_info."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from test_exporter_app import exporter_toml

import perfgen
from perfgen.exporter.app import create_app

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_version_is_pyprojects_through_the_installed_metadata() -> None:
    assert perfgen.__version__ == PYPROJECT_VERSION == version("perfgen")
    # Nowhere else in the package: a second copy is a copy that drifts.
    copies = [
        path
        for folder in ("perfgen", "exporter", "generator", "simulator", "rules", "stack")
        for path in (ROOT / folder).rglob("*.py")
        if f'"{PYPROJECT_VERSION}"' in path.read_text()
    ]
    assert copies == []


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "perfgen", "--version"],
        [Path(sys.executable).parent / "perfgen", "--version"],
    ],
    ids=["python -m perfgen", "console script"],
)
def test_perfgen_version_prints_it(command: list[str | Path]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == f"perfgen, version {PYPROJECT_VERSION}\n"


@pytest.mark.asyncio
async def test_exporter_build_info_shows_the_version(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(exporter_toml(1))
    client = TestClient(TestServer(create_app(str(config))))
    await client.start_server()
    try:
        response = await client.get("/metrics")
        text = await response.text()
    finally:
        await client.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    (sample,) = families["perfgen_exporter_build_info"].samples
    assert sample.labels == {
        "version": PYPROJECT_VERSION,
        "python_version": platform.python_version(),
    }
    assert sample.value == 1


def _source_copy(dest: Path) -> Path:
    """What a build needs (pyproject, README, the package folders), away from the tree.

    setuptools writes build/ and *.egg-info next to the sources it builds; a copy keeps
    the working tree as it was.
    """
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in sorted({Path(f).parts[0] for f in settings["package-dir"].values()}):
        shutil.copytree(ROOT / folder, dest / folder, ignore=skip)
    return dest


@pytest.mark.slow
def test_a_plain_install_has_only_the_perfgen_namespace(tmp_path: Path) -> None:
    """`pip install .` (a wheel, not editable) into a fresh venv, used from elsewhere.

    Nothing is downloaded: the wheel is built with this environment's setuptools
    (--no-build-isolation; the test extras require one with bdist_wheel built in) and
    installed with --no-deps --no-index; the dependencies come from this environment's
    site-packages through a .pth file (a path line: the editable install's own .pth
    finder there is not run, so only the installed copy can answer `import perfgen`).
    """
    (tmp_path / "source").mkdir()
    source = _source_copy(tmp_path / "source")
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, source],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("perfgen-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", python, "install", "--no-deps", "--no-index", wheel],
        check=True,
        timeout=300,
    )
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "outer_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    script = (
        "import importlib.util, perfgen, perfgen.exporter.app\n"
        "for name in ('exporter', 'generator', 'simulator', 'rules', 'stack', 'grafana'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ImportError:\n"
        "        continue\n"
        "    raise SystemExit(name + ' is importable')\n"
        "print(perfgen.exporter.app.__file__)\n"
        "print(perfgen.__version__)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [python, "-c", script], cwd=outside, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr + done.stdout
    app_file, installed_version = done.stdout.splitlines()
    assert Path(app_file).is_relative_to(venv), app_file  # the installed copy, not the tree
    assert installed_version == PYPROJECT_VERSION
    done = subprocess.run(
        [venv / "bin" / "perfgen", "--version"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout == f"perfgen, version {PYPROJECT_VERSION}\n", done.stderr
