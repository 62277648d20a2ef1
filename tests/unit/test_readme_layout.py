"""README's layout table names every module, so a new module cannot land without saying what it is for."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layout_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Layout\n")
    return readme[start : readme.index("\n## ", start + 1)]


def test_every_module_is_in_the_layout_table() -> None:
    named = set(re.findall(r"`((?:bot|handlers)/[a-z_/]+\.py)`", _layout_section()))
    modules = {
        path.relative_to(ROOT).as_posix()
        for folder in ("bot", "handlers")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "__init__.py"
    }
    assert sorted(modules - named) == []  # modules the table does not name
    assert sorted(named - modules) == []  # names of modules that no longer exist


def test_every_model_module_is_named() -> None:
    section = _layout_section()
    models = {path.stem for path in (ROOT / "models").glob("*.py") if path.name != "__init__.py"}
    assert sorted(m for m in models if f"`{m}`" not in section) == []
