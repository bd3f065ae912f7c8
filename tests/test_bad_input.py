"""Each bad input of ``docs/bad-input.md`` fails with one named error line, the one the page shows,
and leaves no run folder behind (a failed resume leaves its run as it was)."""

from pathlib import Path

import pytest
from bad_inputs import PAGE, ROWS, BadInput, make_run, page_messages, run_row


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("template") / "run"
    make_run(folder)
    return folder


def listing(folder: Path) -> dict[str, int]:
    """Every file below ``folder`` with its size."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def test_the_page_lists_every_row_once() -> None:
    messages = page_messages(PAGE.read_text())
    assert sorted(messages) == sorted(row.what for row in ROWS)
    assert len({row.what for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[row.what for row in ROWS])
def test_a_bad_input_gets_the_error_the_page_shows(
    row: BadInput, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = listing(template) if row.prepare is not None else {}
    code, err = run_row(row, template)
    assert code == 2
    assert err.startswith("ilvm-rl: error: ") and err.count("\n") == 1, err
    assert row.expect in err
    assert err.strip() == page_messages(PAGE.read_text())[row.what], (
        "the page is out of date: python tests/bad_inputs.py"
    )
    runs = tmp_path / "runs"
    assert not runs.is_dir() or not [p for p in runs.rglob("*") if p.is_dir()], "a run folder was left behind"
    if row.prepare is not None and (tmp_path / "run" / "config.yaml").is_file():
        # a failed resume adds no segment folder, command line or log
        after = listing(tmp_path / "run")
        assert {name for name in after if name not in before} <= {"results.json"}
        assert after["command.txt"] == before["command.txt"]
        assert not (tmp_path / "run" / "monitor" / "resume-1").exists()
