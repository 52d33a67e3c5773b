"""mypy over the whole package, every module under the perfgen.* name it is imported by.

setuptools installs the top-level folders under one namespace (`perfgen.exporter` ->
`exporter/`, ...) through `[tool.setuptools.package-dir]`; an editable install serves that
mapping from an import hook mypy cannot see, so mypy would either miss the modules or
check them under their folder names. This builds `build/typecheck/perfgen/` from the
same table (the `perfgen/` folder's entries as symlinks, plus one symlink per mapped
package whose folder is not already inside its parent's), runs `mypy -p perfgen` with
that tree on MYPYPATH and settings from `[tool.mypy]`, and prints mypy's findings with
the repository's own paths (`exporter/app.py`, not the link). Arguments go to mypy.
Run by scripts/typecheck.sh.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def package_dirs(pyproject: Path) -> dict[str, Path]:
    settings = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["setuptools"]
    mapping = settings.get("package-dir", {})
    return {name: ROOT / mapping.get(name, name.replace(".", "/")) for name in settings["packages"]}


def build(dest: Path) -> dict[str, Path]:
    """The tree under `dest`; returns each link's path prefix -> the folder it stands for."""
    packages = package_dirs(ROOT / "pyproject.toml")
    top = dest / "perfgen"
    if top.exists():
        shutil.rmtree(top)
    top.mkdir(parents=True)
    links = {f"{top}/": packages["perfgen"]}
    for entry in sorted(packages["perfgen"].iterdir()):
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for name, folder in sorted(packages.items()):
        parent, _, leaf = name.rpartition(".")
        if not parent or packages.get(parent, Path()) / leaf == folder:
            continue  # the root itself, or a subfolder its parent's link already brings
        if parent != "perfgen":
            sys.exit(f"typecheck: {name} -> {folder} is mapped outside its parent")
        (top / leaf).symlink_to(folder, target_is_directory=True)
        links[f"{top / leaf}/"] = folder
    return links


def _real(line: str, links: dict[str, Path]) -> str:
    # Longest prefix first: perfgen/exporter/ before perfgen/.
    for prefix in sorted(links, key=len, reverse=True):
        for shown in (prefix, os.path.relpath(prefix, ROOT) + "/"):
            if line.startswith(shown):
                folder = os.path.relpath(links[prefix], ROOT)
                return f"{folder}/{line[len(shown) :]}"
    return line


def main(argv: list[str]) -> int:
    links = build(TREE)
    env = {**os.environ, "MYPYPATH": str(TREE)}
    command = [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "-p", "perfgen"]
    done = subprocess.run(
        [*command, *argv], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    for line in done.stdout.splitlines():
        print(_real(line, links))
    sys.stderr.write(done.stderr)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
