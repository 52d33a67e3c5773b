"""scripts/typecheck.py: mypy sees every module under the perfgen.* name it is imported by."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _typecheck():
    spec = importlib.util.spec_from_file_location("typecheck", ROOT / "scripts" / "typecheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_installed_package_is_in_the_tree_as_its_real_folder(tmp_path: Path) -> None:
    links = _typecheck().build(tmp_path)
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for name in settings["packages"]:
        folder = ROOT / settings["package-dir"][name]
        seen = tmp_path.joinpath(*name.split("."))
        assert (seen / "__init__.py").resolve() == (folder / "__init__.py").resolve(), name
    assert (tmp_path / "perfgen" / "exporter" / "app.py").resolve() == ROOT / "exporter" / "app.py"
    assert (tmp_path / "perfgen" / "config.py").resolve() == ROOT / "perfgen" / "config.py"
    assert not (tmp_path / "perfgen" / "__pycache__").exists()
    assert links[f"{tmp_path / 'perfgen' / 'exporter'}/"] == ROOT / "exporter"


def test_findings_name_the_repository_files(tmp_path: Path) -> None:
    typecheck = _typecheck()
    links = typecheck.build(tmp_path)
    line = f"{tmp_path}/perfgen/exporter/app.py:3: error: boom  [misc]"
    assert typecheck._real(line, links) == "exporter/app.py:3: error: boom  [misc]"
    line = f"{tmp_path}/perfgen/config.py:9: error: boom  [misc]"
    assert typecheck._real(line, links) == "perfgen/config.py:9: error: boom  [misc]"
    assert typecheck._real("Found 1 error in 1 file", links) == "Found 1 error in 1 file"


def test_a_rebuild_replaces_the_old_tree(tmp_path: Path) -> None:
    typecheck = _typecheck()
    typecheck.build(tmp_path)
    stale = tmp_path / "perfgen" / "gone.py"
    stale.write_text("")
    typecheck.build(tmp_path)
    assert not stale.exists()
    assert (ROOT / "exporter" / "app.py").exists()  # removing links never touches their targets
