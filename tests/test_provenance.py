"""Provenance: the package version and the git commit that made a result."""

import importlib.metadata
import subprocess
from pathlib import Path

import pytest

import ilvm_rl
from ilvm_rl.provenance import git_state, provenance

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]


def git(folder: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(folder), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git work tree with a committed package folder ``pkg/``."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("x = 1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_a_checkout_gives_its_commit_and_whether_it_is_dirty(checkout: Path) -> None:
    head = git(checkout, "rev-parse", "HEAD").strip()
    assert git_state(checkout / "pkg") == {"git_commit": head, "git_dirty": False}
    (checkout / "pkg" / "__init__.py").write_text("x = 2\n")
    assert git_state(checkout / "pkg") == {"git_commit": head, "git_dirty": True}
    git(checkout, "commit", "-q", "-am", "second")
    state = git_state(checkout / "pkg")
    assert state["git_commit"] != head and state["git_dirty"] is False


def test_no_git_state_outside_a_checkout_or_without_git(checkout: Path, tmp_path_factory, monkeypatch) -> None:
    # an installed copy inside some repository (a virtual environment in a project) is not that repository
    nested = checkout / "venv" / "site-packages" / "pkg"
    nested.mkdir(parents=True)
    assert git_state(nested) == {}
    plain = tmp_path_factory.mktemp("plain") / "pkg"
    plain.mkdir()
    assert git_state(plain) == {}
    monkeypatch.setenv("PATH", "")  # git cannot be found
    assert git_state(checkout / "pkg") == {}


def test_provenance_names_the_installed_version() -> None:
    record = provenance()
    assert record["package_version"] == ilvm_rl.__version__ == importlib.metadata.version("ilvm-rl")
    assert set(record) <= {"package_version", "git_commit", "git_dirty"}


def test_the_package_declares_its_type_hints() -> None:
    assert (Path(ilvm_rl.__file__).parent / "py.typed").is_file()
    pyproject = (Path(ilvm_rl.__file__).parent.parent / "pyproject.toml").read_text()
    assert '"ilvm_rl" = ["py.typed"]' in pyproject  # package data: it goes into the wheel
