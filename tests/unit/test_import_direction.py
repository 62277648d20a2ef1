"""Imports point down: handlers → bot/flows/ → bot/slack/ and bot/core/ → models and the base modules.

Read from the source (every import statement, function-level ones included), so a lazy import cannot hide a wrong
direction. The use cases in bot/flows/ sit side by side: only bot/flows/recovery.py may call another flow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_CORE = ("slack_sdk", "slack_bolt", "boto3", "botocore", "bot.slack", "bot.flows", "handlers")
FORBIDDEN_IN_SLACK = ("bot.flows", "handlers")


def imported_modules(source: str, module: str) -> set[str]:
    """Every module a source file imports, as absolute dotted names (`from bot.flows import x` names bot.flows.x
    when x is a module of that package)."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}"))
    return found


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _modules(folder: str) -> list[tuple[str, str]]:
    files = sorted((ROOT / folder).rglob("*.py"))
    return [(".".join(f.relative_to(ROOT).with_suffix("").parts), f.read_text()) for f in files]


def _hits(imports: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(name for name in imports if any(name == f or name.startswith(f + ".") for f in forbidden))


def flow_violations(module: str, source: str) -> list[str]:
    """Another flow imported by a flow other than recovery.py."""
    if module.endswith(".recovery") or module.endswith("__init__"):
        return []
    others = {name for name in imported_modules(source, module) if name.startswith("bot.flows.")}
    return sorted(name for name in others if name != module)


def _names(folder: str) -> list[str]:
    return [module for module, _ in _modules(folder)]


def _source(module: str) -> str:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py").read_text()


@pytest.mark.parametrize("module", _names("bot/core"))
def test_the_rules_import_no_slack_no_boto3_and_no_flow(module: str) -> None:
    assert _hits(imported_modules(_source(module), module), FORBIDDEN_IN_CORE) == []


@pytest.mark.parametrize("module", _names("bot/slack"))
def test_what_slack_sees_imports_no_flow_and_no_handler(module: str) -> None:
    assert _hits(imported_modules(_source(module), module), FORBIDDEN_IN_SLACK) == []


@pytest.mark.parametrize("module", _names("bot/flows"))
def test_no_flow_imports_another_but_recovery(module: str) -> None:
    assert flow_violations(module, _source(module)) == []


def test_only_the_composition_root_imports_the_handlers() -> None:
    """bot/app.py registers the listeners; nothing else below the handlers knows them."""
    hits = {
        module: _hits(imported_modules(source, module), ("handlers",))
        for folder in ("bot", "models")
        for module, source in _modules(folder)
        if module != "bot.app"
    }
    assert {module: names for module, names in hits.items() if names} == {}


def test_the_checks_see_lazy_and_aliased_imports() -> None:
    """The checker itself: an import inside a function, an aliased one and a from-import of a module all count."""
    source = "def f():\n    from bot.flows import offboarding as admin\n    import boto3\n"
    assert flow_violations("bot.flows.rotation", source) == ["bot.flows.offboarding"]
    assert _hits(imported_modules(source, "bot.core.x"), FORBIDDEN_IN_CORE) == [
        "bot.flows",
        "bot.flows.offboarding",
        "boto3",
    ]
    assert flow_violations("bot.flows.recovery", source) == []
