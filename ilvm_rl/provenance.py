"""What made a result: the package version and, when the package runs from a git checkout, its commit.

Run folders (``results.json``) and benchmark grids (``grid.json``) record :func:`provenance`, so a
table can be traced to the code that produced it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import ilvm_rl

# a git that hangs (a network file system, a lock) must not hold up a run
GIT_TIMEOUT_S = 10.0


def _git(checkout: Path, *args: str) -> str | None:
    """Stdout of ``git -C checkout ARGS``, or None when git is missing, fails or times out."""
    try:
        done = subprocess.run(
            ["git", "-C", str(checkout), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(package_dir: Path) -> dict[str, Any]:
    """The commit of the checkout that holds ``package_dir`` and whether it has uncommitted changes.

    Args:
        package_dir: the folder of the imported package (``ilvm_rl/``).

    Returns:
        ``{"git_commit": <40 hex digits>, "git_dirty": bool}`` when ``package_dir`` sits at the top
        of a git work tree (a checkout, an editable install); an empty dict otherwise: git missing,
        not a checkout, or an installed copy that merely lies inside some other repository (a
        virtual environment in a project folder), whose commit says nothing about this code.
    """
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != package_dir.resolve().parent:
        return {}
    commit, status = _git(package_dir, "rev-parse", "HEAD"), _git(package_dir, "status", "--porcelain")
    if commit is None or status is None:
        return {}
    return {"git_commit": commit.strip(), "git_dirty": bool(status.strip())}


def provenance() -> dict[str, Any]:
    """The package version, plus ``git_commit`` and ``git_dirty`` when run from a checkout.

    Returns:
        e.g. ``{"package_version": "0.1.0", "git_commit": "962f7bb…", "git_dirty": False}``.
    """
    return {"package_version": ilvm_rl.__version__, **git_state(Path(ilvm_rl.__file__).parent)}
