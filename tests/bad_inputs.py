"""Every bad input tried on the command line, with the error it gets: the rows of ``docs/bad-input.md``.

``tests/test_bad_input.py`` runs each row and checks that it fails with exactly the error the page
shows. After a deliberate change of a message, rewrite the page with ``python tests/bad_inputs.py``.

Each row runs in a scratch folder (the current directory), so the paths it names are relative.
``run/`` there is an interrupted run (trained to 128 of 256 steps, with a checkpoint) when a row
asks for it; its ``prepare`` step then spoils it in the way the row describes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fast import FAST

PAGE = Path(__file__).parent.parent / "docs" / "bad-input.md"
FAST_SET = ["--set", "n_envs=2", "--set", "algo_kwargs.n_steps=32", "--set", "algo_kwargs.batch_size=32"]


@dataclass(frozen=True)
class BadInput:
    """One bad input.

    Attributes:
        what: the input, in words (the page's first column).
        argv: the ``ilvm-rl`` arguments.
        expect: a part of the error that names the key, file or space at fault.
        files: files to write first, relative path to text.
        prepare: spoils ``run/`` (an interrupted run made for the row); None: the row needs no run.
    """

    what: str
    argv: tuple[str, ...]
    expect: str
    files: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None


def _truncate_model(run: Path) -> None:
    data = (run / "model.zip").read_bytes()
    (run / "model.zip").write_bytes(data[:1000])


def _older_module(run: Path) -> None:
    path = run / "exploration" / "settings.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "steps": 64}))


def _finished(run: Path) -> None:
    (run / "results.json").write_text("{}")


def _no_config(run: Path) -> None:
    (run / "config.yaml").unlink()


def _train(*extra: str, agent: str = "ppo", env: str = "CartPole-v1") -> tuple[str, ...]:
    return ("train", "--agent", agent, "--env", env, "--runs-dir", "runs", "--no-progress", *extra)


RECIPE = "recipe.yaml"
ROWS: list[BadInput] = [
    BadInput("an unknown recipe name", _train(agent="ppo_ilmv"), "unknown agent 'ppo_ilmv'"),
    BadInput("a recipe file that does not exist", _train(agent="mine.yaml"), "mine.yaml does not exist"),
    BadInput("an unknown environment id", _train(env="CartPole-v9"), "unknown environment id 'CartPole-v9'"),
    BadInput("a `module:Name` id whose module is missing", _train(env="nomodule:Env-v0"), "cannot import module"),
    BadInput(
        "an unknown recipe key in `--set`",
        _train("--set", "exploration.bogus=1", agent="ppo_ilvm"),
        "unknown key 'bogus'",
    ),
    BadInput(
        "a key of another bonus",
        _train("--set", "exploration.output_dim=32", agent="ppo_ilvm"),
        "key 'output_dim' belongs to bonus 'rnd', not 'disagreement'",
    ),
    BadInput("an unknown bonus", _train("--set", "exploration.bonus=curiosity"), "exploration.bonus: expected 'ilvm'"),
    BadInput("`--set` without `=`", _train("--set", "n_envs"), "expected KEY=VALUE"),
    BadInput("a `--set` value that is not YAML", _train("--set", "n_envs=[1"), "the value is not valid YAML"),
    BadInput("a `--set` key with an empty part", _train("--set", "exploration..coef=1"), "has an empty part"),
    BadInput(
        "a `--set` key below a value",
        _train("--set", "n_envs=2", "--set", "n_envs.x=1"),
        "n_envs was set to a value, not a section",
    ),
    BadInput("a value of the wrong type", _train("--set", "n_envs=two"), "overrides.n_envs: expected int"),
    BadInput("an unknown algorithm argument", _train("--set", "algo_kwargs.lr=1"), "'lr' is not an argument of ppo"),
    BadInput(
        "an algorithm argument of the wrong type",
        _train("--set", "algo_kwargs.gamma=high"),
        "algo_kwargs.gamma: expected float, got 'high'",
    ),
    BadInput(
        "a count written as a float",
        _train("--set", "algo_kwargs.n_steps=1e3"),
        "algo_kwargs.n_steps: expected int, got 1000.0",
    ),
    BadInput(
        "a bonus setting for an agent without a bonus",
        _train("--set", "exploration.int_coef=0.5"),
        "agent ppo has no exploration bonus to change",
    ),
    BadInput("a negative seed", _train("--seed", "-1"), "--seed must be >= 0"),
    BadInput("`algo_kwargs.batch_size: 0`", _train("--set", "algo_kwargs.batch_size=0"), "algo_kwargs.batch_size"),
    BadInput(
        "an exploration replay smaller than one rollout",
        _train("--set", "exploration.store_capacity=10", agent="ppo_ilvm"),
        "exploration.store_capacity=10 is smaller than one rollout",
    ),
    BadInput("`--steps 0`", _train("--steps", "0"), "steps must be >= 1"),
    BadInput(
        "bounds normalisation of an unbounded observation",
        _train("--set", "normalize_obs=bounds"),
        "normalize_obs: 'bounds'",
    ),
    BadInput(
        "a representation checkpoint that does not exist",
        _train("--set", "representation.checkpoint=nowhere", agent="ppo_ilvm_repr"),
        "nowhere/settings.json: missing",
    ),
    BadInput(
        "a misspelled top-level section",
        _train(agent=RECIPE),
        "defualt: not a recipe section",
        {RECIPE: "defualt: {n_envs: 2}\n"},
    ),
    BadInput(
        "a section for an environment id that is not registered",
        _train(agent=RECIPE),
        "MountainCar-v1: not a recipe section",
        {RECIPE: "MountainCar-v1: {n_envs: 2}\n"},
    ),
    BadInput(
        "a section that is not a mapping", _train(agent=RECIPE), "default: expected a mapping", {RECIPE: "default: 1\n"}
    ),
    BadInput(
        "a recipe that is not valid YAML", _train(agent=RECIPE), "recipe.yaml: not valid YAML", {RECIPE: "default: [\n"}
    ),
    BadInput(
        "a recipe that is not a mapping", _train(agent=RECIPE), "recipe.yaml: expected a recipe", {RECIPE: "- ppo\n"}
    ),
    BadInput(
        "a recipe that extends an unknown one",
        _train(agent=RECIPE),
        "recipe.yaml: extends: unknown agent 'nope'",
        {RECIPE: "extends: nope\n"},
    ),
    BadInput(
        "a recipe that extends itself",
        _train(agent=RECIPE),
        "'extends' forms a cycle",
        {RECIPE: "extends: recipe.yaml\n"},
    ),
    BadInput("`--runs-dir` naming a file", _train(), "--runs-dir runs: runs is a file", {"runs": "not a folder\n"}),
    BadInput(
        "a Tuple observation space",
        _train(env="toy_envs:TupleObs-v0"),
        "observation space Tuple(Discrete(2), Discrete(2)) is not supported",
    ),
    BadInput(
        "a Text observation space",
        _train(env="toy_envs:TextObs-v0", agent="ppo_ilvm"),
        "observation space Text(",
    ),
    BadInput(
        "a Tuple action space", _train(env="toy_envs:TupleAction-v0"), "action space Tuple(Discrete(2), Discrete(2))"
    ),
    BadInput(
        "`--resume` of a folder that is not a run",
        ("train", "--resume", "run"),
        "config.yaml is missing",
        prepare=_no_config,
    ),
    BadInput("`--resume` of a finished run", ("train", "--resume", "run"), "has finished", prepare=_finished),
    BadInput("`--resume` of a folder that does not exist", ("train", "--resume", "gone"), "gone does not exist"),
    BadInput(
        "`--resume` with settings of its own",
        ("train", "--resume", "run", "--steps", "1000"),
        "drop --steps",
    ),
    BadInput(
        "`--resume` with a truncated `model.zip`",
        ("train", "--resume", "run"),
        "run/model.zip: not a readable SB3 model zip",
        prepare=_truncate_model,
    ),
    BadInput(
        "`--resume` with a model and module of different steps",
        ("train", "--resume", "run"),
        "do not belong together",
        prepare=_older_module,
    ),
    BadInput(
        "`pretrain --policy` with a truncated `model.zip`",
        ("pretrain", "--env", "CartPole-v1", "--policy", "run/model.zip", "--out", "out"),
        "cannot load the model's weights",
        prepare=_truncate_model,
    ),
    BadInput(
        "`pretrain --policy` naming no file",
        ("pretrain", "--env", "CartPole-v1", "--policy", "none.zip"),
        "none.zip: no such model file",
    ),
    BadInput(
        "`pretrain --out` naming a file",
        ("pretrain", "--env", "CartPole-v1", "--out", "taken"),
        "--out taken: taken is a file",
        {"taken": "a file\n"},
    ),
    BadInput(
        "`bench --runs-dir` naming a file",
        ("bench", "--agents", "ppo", "--env", "CartPole-v1", "--runs-dir", "runs"),
        "--runs-dir runs: runs is a file",
        {"runs": "a file\n"},
    ),
    BadInput(
        "`bench --steps 0`",
        ("bench", "--agents", "ppo", "--env", "CartPole-v1", "--steps", "0", "--runs-dir", "runs"),
        "--steps: steps must be >= 1",
    ),
    BadInput(
        "`bench --seeds 0`",
        ("bench", "--agents", "ppo", "--env", "CartPole-v1", "--seeds", "0"),
        "--seeds must be >= 1, got 0",
    ),
    BadInput(
        "`bench --env` of a task without a reward threshold",
        ("bench", "--agents", "sac", "--env", "Pendulum-v1"),
        "Pendulum-v1 has no reward_threshold; give one with --threshold T",
    ),
    BadInput(
        "a threshold no return can be judged by",
        ("train", "--agent", "ppo", "--env", "Pendulum-v1", "--threshold", "nan"),
        "--threshold must be a finite return, got nan",
    ),
    BadInput(
        "`pretrain --fit-steps 0`",
        ("pretrain", "--env", "CartPole-v1", "--fit-steps", "0"),
        "--fit-steps must be >= 1",
    ),
    BadInput("an unknown suite", ("bench", "--agents", "ppo", "--suite", "explore"), "unknown suite 'explore'"),
    BadInput("`plot` of a folder that is not a run", ("plot", "nothing"), "nothing is not a run folder"),
]


def make_run(folder: Path) -> None:
    """An interrupted run in ``folder``: 128 steps of ppo_ilvm on CartPole with a checkpoint, budget 256."""
    from ilvm_rl.run import RunSpec, train

    folder.mkdir()
    train(RunSpec("ppo_ilvm", "CartPole-v1", 0, 128, {**FAST, "checkpoint_every": 64}), folder, command="first")
    for name in ("results.json", "eval.json"):
        (folder / name).unlink()
    (folder / "config.yaml").write_text((folder / "config.yaml").read_text().replace("steps: 128", "steps: 256"))


def run_row(row: BadInput, template: Path | None) -> tuple[int, str]:
    """Run ``row`` in the current directory; its exit code and what it wrote to stderr."""
    from ilvm_rl.cli import main

    for name, text in row.files.items():
        Path(name).write_text(text)
    if row.prepare is not None:
        assert template is not None, f"{row.what}: needs a run"
        shutil.copytree(template, "run")
        row.prepare(Path("run"))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(list(row.argv))
    return code, err.getvalue()


def escape(text: str) -> str:
    return text.replace("|", "\\|")


def page(messages: dict[str, str]) -> str:
    """The Markdown page: each row's input, command and error (``messages``: input to error line)."""
    lines = [
        "# Bad input and what it gets",
        "",
        "Every input below was tried on the command line; each stops before anything trains, with one line",
        "that names the key, file or space at fault, and leaves no run folder behind (a failed `--resume`",
        "leaves the run as it was). The table is checked by `tests/test_bad_input.py`, which runs every row;",
        "`python tests/bad_inputs.py` writes it again after a message changes. Paths are relative to the",
        "folder the command ran in; `run` is an interrupted run folder, spoiled as the first column says.",
        "",
        "| input | command | error |",
        "| --- | --- | --- |",
    ]
    for row in ROWS:
        command = escape(" ".join(["ilvm-rl", *row.argv]))
        lines.append(f"| {escape(row.what)} | `{command}` | `{escape(messages[row.what])}` |")
    return "\n".join(lines) + "\n"


def page_messages(text: str) -> dict[str, str]:
    """Input to error line, read back from the page's table."""
    messages = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.replace("\\|", "\0").split("|")[1:-1]]
        if len(cells) == 3 and cells[2].startswith("`ilvm-rl: error:"):
            messages[cells[0].replace("\0", "|")] = cells[2].strip("`").replace("\0", "|")
    return messages


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    found: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as scratch:
        template = Path(scratch) / "template"
        make_run(template)
        for index, row in enumerate(ROWS):
            folder = Path(scratch) / str(index)
            folder.mkdir()
            os.chdir(folder)
            found[row.what] = run_row(row, template)[1].strip()
    PAGE.parent.mkdir(exist_ok=True)
    PAGE.write_text(page(found))
    print(f"wrote {PAGE}")
