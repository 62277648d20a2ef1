"""Ties each lock file to the pyproject.toml it was compiled from, so a stale lock is caught offline.

`scripts/dev lock` compiles the locks with pip-compile and then runs `stamp`, which writes the digest of the
dependency lists a lock was compiled from into its first line. `check` recomputes the digests and fails, one line
per lock, when pyproject.toml's dependencies changed since: no network, no resolver, the same answer every time
(re-running pip-compile to compare would also flag a wheel uploaded later for an already pinned version).

Usage: python3 scripts/lockfile.py stamp | check   (stdlib only, Python 3.11+)
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# lock file -> the extras it covers beyond [project].dependencies (requirements.txt is what Heroku installs).
LOCKS: dict[str, tuple[str, ...]] = {"requirements.txt": (), "requirements-dev.lock": ("dev",)}
MARK = "# pyproject.toml inputs sha256: "


def digest(pyproject: dict, extras: tuple[str, ...]) -> str:
    """The digest of exactly what pip-compile reads for one lock (order-insensitive, whitespace-insensitive)."""
    project = pyproject["project"]
    inputs = {
        "requires-python": project.get("requires-python", ""),
        "dependencies": sorted(" ".join(d.split()) for d in project.get("dependencies", [])),
        "extras": {
            extra: sorted(" ".join(d.split()) for d in project.get("optional-dependencies", {}).get(extra, []))
            for extra in extras
        },
    }
    if extras:  # the dev lock also pins what building the editable install needs
        inputs["build-system"] = sorted(pyproject.get("build-system", {}).get("requires", []))
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def recorded(lock: Path) -> str | None:
    first = lock.read_text().splitlines()[:1]
    return first[0][len(MARK) :].strip() if first and first[0].startswith(MARK) else None


def main(argv: list[str]) -> int:
    if argv not in (["stamp"], ["check"]):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    stale = 0
    for name, extras in LOCKS.items():
        lock = ROOT / name
        want = digest(pyproject, extras)
        if argv == ["stamp"]:
            lines = [line for line in lock.read_text().splitlines() if not line.startswith(MARK)]
            lock.write_text("\n".join([MARK + want, *lines]) + "\n")
        elif not lock.is_file():
            print(f"lock: {name} is missing; run `scripts/dev lock`", file=sys.stderr)
            stale += 1
        elif recorded(lock) != want:
            print(
                f"lock: {name} is stale: pyproject.toml's dependencies changed; run `scripts/dev lock`", file=sys.stderr
            )
            stale += 1
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
