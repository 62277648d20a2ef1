"""The lock files: tied to pyproject.toml by a digest (scripts/lockfile.py), complete and hash-pinned."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("lockfile", ROOT / "scripts" / "lockfile.py")
assert _spec and _spec.loader
lockfile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lockfile)

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ \\]+) \\$", re.M)


def pins(name: str) -> dict[str, str]:
    return {canon(pkg): version for pkg, version in PIN.findall((ROOT / name).read_text())}


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_committed_locks_match_pyproject() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lockfile.py"), "check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("name", "extras"), list(lockfile.LOCKS.items()))
def test_every_requirement_is_pinned_within_its_range_with_hashes(name: str, extras: tuple[str, ...]) -> None:
    locked = pins(name)
    wanted = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        wanted += PYPROJECT["project"]["optional-dependencies"][extra]
    for line in wanted:
        requirement = Requirement(line)
        assert canon(requirement.name) in locked, f"{requirement.name} is not in {name}"
        assert requirement.specifier.contains(locked[canon(requirement.name)]), f"{name}: {requirement} not met"
    text = (ROOT / name).read_text()
    blocks = [block for block in re.split(r"\n(?=\S)", text) if not block.startswith("#")]
    assert len(blocks) == len(locked)  # nothing but pins (no options, no unpinned line)
    unhashed = [block.split()[0] for block in blocks if not re.search(r"--hash=sha256:[0-9a-f]{64}", block)]
    assert not unhashed, f"{name}: no hash for {unhashed}"
    assert "file://" not in text and "--index-url" not in text and "--find-links" not in text


def test_a_changed_dependency_makes_the_lock_stale_and_reordering_does_not() -> None:
    base = lockfile.digest(PYPROJECT, ("dev",))
    project = dict(PYPROJECT["project"])
    changed = {**PYPROJECT, "project": {**project, "dependencies": [*project["dependencies"], "requests>=2"]}}
    reordered = {**PYPROJECT, "project": {**project, "dependencies": list(reversed(project["dependencies"]))}}
    dev_changed = {
        **PYPROJECT,
        "project": {**project, "optional-dependencies": {**project["optional-dependencies"], "dev": ["pytest>=9"]}},
    }
    assert lockfile.digest(changed, ("dev",)) != base
    assert lockfile.digest(reordered, ("dev",)) == base
    assert lockfile.digest(dev_changed, ("dev",)) != base
    assert lockfile.digest(dev_changed, ()) == lockfile.digest(PYPROJECT, ())  # the runtime lock ignores dev
