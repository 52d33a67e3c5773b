"""generator.proxy_toml: route-only edits and atomic, crash-safe writes."""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path

import pytest

from perfgen import atomic
from perfgen.generator.proxy_toml import (
    TomlEditError,
    apply_routes,
    atomic_write,
    only_routes_changed,
    route_values,
    unified_diff,
)

EXAMPLE = (Path(__file__).resolve().parent.parent / "examples" / "config.example.toml").read_text()


def changed_lines(old: str, new: str) -> list[str]:
    return [
        line
        for line in difflib.ndiff(old.splitlines(), new.splitlines())
        if line[:2] in ("- ", "+ ")
    ]


def test_only_the_route_lines_change_and_comments_survive():
    new = apply_routes(
        EXAMPLE,
        {
            "default": "deepseek,deepseek-chat|groq,llama-3.3-70b-versatile",
            "think": "openrouter,deepseek/deepseek-r1",
        },
    )
    assert only_routes_changed(EXAMPLE, new) == []
    assert changed_lines(EXAMPLE, new) == [
        '- default = "groq,llama-3.3-70b-versatile|deepseek,deepseek-chat|openrouter,'
        'anthropic/claude-3.5-sonnet"',
        '+ default = "deepseek,deepseek-chat|groq,llama-3.3-70b-versatile"',
        '- think = "deepseek,deepseek-reasoner|openrouter,deepseek/deepseek-r1"',
        '+ think = "openrouter,deepseek/deepseek-r1"',
    ]
    old_doc, new_doc = tomllib.loads(EXAMPLE), tomllib.loads(new)
    assert old_doc["performance"] == new_doc["performance"]
    assert route_values(new)["think"] == "openrouter,deepseek/deepseek-r1"


def test_unchanged_values_are_not_touched_and_style_is_kept():
    text = "[router]\ndefault   =  'a,b'   # primary first\nthink = \"c,d\"\n"
    assert apply_routes(text, {"default": "a,b"}) == text
    edited = apply_routes(text, {"default": "x,y|a,b"})
    assert edited == "[router]\ndefault   =  'x,y|a,b'   # primary first\nthink = \"c,d\"\n"


def test_new_route_key_is_appended_to_router_and_others_refused():
    text = '[router]\ndefault = "a,b"\n\n[other]\nx = 1\n'
    edited = apply_routes(text, {"think": "c,d"})
    assert tomllib.loads(edited)["router"] == {"default": "a,b", "think": "c,d"}
    assert only_routes_changed(text, edited) == []
    with pytest.raises(TomlEditError, match="not a route key"):
        apply_routes(text, {"strategy": "RoundRobin"})
    with pytest.raises(TomlEditError, match="no \\[router\\]"):
        apply_routes("[proxy]\n", {"default": "a,b"})


def test_only_routes_changed_catches_other_edits():
    base = '[router]\ndefault = "a,b"\nstrategy = "fill_first"\n[x]\ny = 1\n'
    assert only_routes_changed(base, base.replace("y = 1", "y = 2"))
    assert only_routes_changed(base, base.replace("fill_first", "round_robin"))
    assert only_routes_changed(base, base.replace('default = "a,b"\n', ""))


def test_diff_is_unified():
    diff = unified_diff("a\nb\n", "a\nc\n", "config.toml")
    assert diff.startswith("--- config.toml (current)\n+++ config.toml (generated)\n")
    assert "-b\n+c\n" in diff


def test_atomic_write_keeps_backup_mode_and_follows_symlinks(tmp_path):
    real = tmp_path / "real.toml"
    real.write_text("old\n")
    os.chmod(real, 0o640)
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    backup = atomic_write(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"
    assert backup == tmp_path / "real.toml.bak" and backup.read_text() == "old\n"
    assert real.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.toml",
        "real.toml",
        "real.toml.bak",
    ]
    assert atomic_write(tmp_path / "fresh.toml", "x\n") is None  # nothing to back up


@pytest.mark.parametrize("crash_point", ["write", "fsync", "replace"])
def test_crash_while_writing_leaves_the_old_file_whole(tmp_path, monkeypatch, crash_point):
    target = tmp_path / "config.toml"
    old = EXAMPLE
    target.write_text(old)
    new = apply_routes(old, {"default": "groq,llama-3.1-8b-instant"})

    class Crash(Exception):
        pass

    real_replace, real_fsync, real_fdopen = os.replace, os.fsync, os.fdopen

    def is_main_temp(fd):
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        return name.startswith(".config.toml.") and not name.startswith(".config.toml.bak.")

    def crashing_replace(src, dst):
        if Path(dst) == target:
            raise Crash
        real_replace(src, dst)

    def crashing_fsync(fd):
        # Only the main file's temp write crashes; directory fsyncs pass.
        if is_main_temp(fd):
            raise Crash
        real_fsync(fd)

    class HalfWriter:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise Crash

        def __getattr__(self, name):
            return getattr(self.handle, name)

    def crashing_fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        if is_main_temp(fd):
            return HalfWriter(handle)
        return handle

    patch = {
        "replace": ("replace", crashing_replace),
        "fsync": ("fsync", crashing_fsync),
        "write": ("fdopen", crashing_fdopen),
    }[crash_point]
    monkeypatch.setattr(atomic.os, *patch)
    with pytest.raises(Crash):
        atomic_write(target, new)
    monkeypatch.undo()
    assert target.read_text() == old  # the old file, whole
    assert (tmp_path / "config.toml.bak").read_text() == old  # backup made before replacing
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    # The run after the crash completes: the new file, whole, and the old one as backup.
    atomic_write(target, new)
    assert target.read_text() == new
    assert (tmp_path / "config.toml.bak").read_text() == old
