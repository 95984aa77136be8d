"""The licence, the package metadata and the changelog say what is true."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_licence_is_mit_in_the_file_and_the_metadata():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
    assert "urls" not in project  # no public address exists: none is named


def _exists(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is gone
        return False


def test_the_changelogs_module_moves_are_true():
    """Oracle: the import system. Every module the table moved to exists; every module it
    moved from is gone (except where a package of that name now stands, marked so)."""
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog") and "\n## [Unreleased]\n" in text
    rows = re.findall(r"^  \| `([\w.]+)`( \((?:module|package)\))? \| `([\w.]+)` \|$", text,
                      re.M)
    assert len(rows) >= 30
    for before, kind, now in rows:
        assert _exists(now), now
        if kind != " (module)":  # a package of the old module's name stands there now
            assert not _exists(before), before
