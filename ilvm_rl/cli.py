"""The ``ilvm-rl`` command line: ``train``, ``bench`` and ``recipes``."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ilvm_rl.bench import run_grid
from ilvm_rl.checkpoint import CheckpointError
from ilvm_rl.config import ConfigError
from ilvm_rl.exploration.spaces import UnsupportedSpaceError
from ilvm_rl.recipes import load_recipe, recipe_names
from ilvm_rl.run import RunSpec, make_run_dir, resume, train

USER_ERRORS = (ConfigError, CheckpointError, UnsupportedSpaceError)


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``a.b=value`` pairs (values parsed as YAML) to a nested dict."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. exploration.coef=0.5")
        node = overrides
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ilvm-rl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser("train", help="train one agent and write a run folder")
    train_parser.add_argument("--agent", help="recipe name in agents/ or path to a recipe .yaml")
    train_parser.add_argument("--env", help="Gymnasium environment id, e.g. MountainCar-v0")
    train_parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint (other flags are ignored)",
    )
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument("--steps", type=int, default=300_000, help="environment steps (all envs together)")
    train_parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go")
    train_parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe setting, e.g. --set exploration.coef=0.5 (repeatable)",
    )
    train_parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    bench_parser = commands.add_parser("bench", help="run agents × seeds on a task in parallel and print a table")
    bench_parser.add_argument("--agents", nargs="+", required=True, help="recipe names or paths")
    bench_parser.add_argument("--env", required=True)
    bench_parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    bench_parser.add_argument("--steps", type=int, default=300_000)
    bench_parser.add_argument("--workers", type=int, default=2, help="parallel worker processes")
    bench_parser.add_argument("--name", help="results folder under runs/bench/ (default: the env id)")
    bench_parser.add_argument("--runs-dir", type=Path, default=Path("runs"))
    bench_parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of every agent's recipe (repeatable)",
    )

    commands.add_parser("recipes", help="list the shipped agent recipes")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = shlex.join(["ilvm-rl", *argv])
    try:
        if args.command == "recipes":
            print("\n".join(recipe_names()))
        elif args.command == "train" and args.resume is not None:
            print(json.dumps(resume(args.resume, progress_bar=not args.no_progress, command=command), indent=2))
        elif args.command == "train":
            if not args.agent or not args.env:
                raise ConfigError("train needs --agent and --env (or --resume RUN_DIR)")
            spec = RunSpec(args.agent, args.env, args.seed, args.steps, parse_overrides(args.overrides))
            load_recipe(spec.agent, spec.env_id, spec.overrides)  # no run folder for a bad recipe
            run_dir = make_run_dir(args.runs_dir, spec)
            results = train(spec, run_dir, progress_bar=not args.no_progress, command=command)
            print(json.dumps(results, indent=2))
            print(f"run folder: {run_dir}\nTensorBoard: tensorboard --logdir {run_dir}")
        elif args.command == "bench":
            name = args.name or args.env.replace("/", "-")
            seeds = list(range(args.seeds))
            overrides = parse_overrides(args.overrides)
            run_grid(name, args.agents, args.env, seeds, args.steps, args.runs_dir, args.workers, command, overrides)
            print((args.runs_dir / "bench" / name / "results.md").read_text())
    except USER_ERRORS as error:
        print(f"ilvm-rl: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
