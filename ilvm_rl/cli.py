"""The ``ilvm-rl`` command line: ``train``, ``bench``, ``pretrain``, ``plot``, ``evaluate``, ``world-model``
and ``recipes``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
import yaml
from gymnasium.error import DependencyNotInstalled

from ilvm_rl import __version__
from ilvm_rl.bench import load_suite, run_grid, single_task_suite
from ilvm_rl.bench.backends import BACKENDS
from ilvm_rl.bench.report import GOAL_RATE_WINDOW
from ilvm_rl.bench.suite import suite_names
from ilvm_rl.bench.world_model import markdown_table as world_model_table
from ilvm_rl.bench.world_model import run_benchmark as run_world_model_benchmark
from ilvm_rl.checkpoint import CheckpointError
from ilvm_rl.config import ConfigError, checked_seed, checked_threshold, load_yaml, make_folder
from ilvm_rl.data.spaces import UnsupportedSpaceError
from ilvm_rl.recipes import check_env_id, file_stem, load_recipe, recipe_names, recipe_summary
from ilvm_rl.representation.pretrain import pretrain
from ilvm_rl.run import (
    MODEL_FILE,
    RunSpec,
    evaluate,
    is_kept,
    load_agent,
    make_run_dir,
    observation_wrapper,
    read_run_spec,
    resume,
    reward_threshold,
    torch_device,
    train,
)

DEFAULT_STEPS = 300_000
"""Budget of ``train`` and of ``bench --env`` when ``--steps`` is not given."""

# an env of an optional extra that is not installed (ilvm/DoorKey8x8-v0 without minigrid) is the user's to fix
USER_ERRORS = (ConfigError, CheckpointError, UnsupportedSpaceError, DependencyNotInstalled)


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``a.b=value`` pairs (values parsed as YAML) to a nested dict."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. exploration.int_coef=0.5")
        *parents, leaf = key.split(".")
        if not all(parents) or not leaf:
            raise ConfigError(
                f"--set {pair!r}: {key!r} has an empty part; keys are dotted names, e.g. exploration.int_coef"
            )
        node = overrides
        for depth, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {pair!r}: {'.'.join(parents[: depth + 1])} was set to a value, not a section")
        try:
            node[leaf] = load_yaml(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {pair!r}: the value is not valid YAML ({error})") from error
    return overrides


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ilvm-rl",
        description="Train Stable-Baselines3 agents with ILVM exploration, representation and world-model "
        "modules; benchmark them across seeds.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser("train", help="train one agent and write a run folder")
    train_parser.add_argument("--agent", help="recipe name in agents/ or path to a recipe .yaml")
    train_parser.add_argument("--env", help="Gymnasium environment id, e.g. MountainCar-v0")
    train_parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint, with the run's own settings",
    )
    train_parser.add_argument("--seed", type=int, help="seeds the agent, the modules and the environments (default 0)")
    train_parser.add_argument(
        "--steps", type=int, help=f"environment steps, all envs together (default {DEFAULT_STEPS:,})"
    )
    train_parser.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="where run folders go (default: runs)"
    )
    train_parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe setting, e.g. --set exploration.int_coef=0.5 (repeatable)",
    )
    train_parser.add_argument(
        "--threshold",
        type=float,
        metavar="RETURN",
        help="the return a run must reach (found: a trailing mean of 10 training episodes; kept: the final "
        "evaluation), e.g. for an env registered without a reward_threshold (default: the recipe's threshold, "
        "else the env's reward_threshold)",
    )
    train_parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        help="where the agent and its modules compute (default: the recipe's device, cpu in the shipped ones); "
        "with --resume, the device to continue on",
    )
    add_threads_flag(train_parser)
    train_parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    bench_parser = commands.add_parser(
        "bench", help="run agents × tasks × seeds in parallel; write a CSV, a report and plots"
    )
    bench_parser.add_argument("--agents", nargs="+", required=True, help="recipe names or paths")
    tasks = bench_parser.add_mutually_exclusive_group(required=True)
    tasks.add_argument("--suite", help=f"suite name in envs/suites/ ({', '.join(suite_names())}) or path to a .yaml")
    tasks.add_argument("--env", help="a single task: this Gymnasium id with its own reward threshold")
    bench_parser.add_argument(
        "--steps",
        type=int,
        help=f"budget per run: of the --env task (default {DEFAULT_STEPS:,}), or of every task of --suite "
        "(default: the suite's)",
    )
    bench_parser.add_argument(
        "--threshold",
        type=float,
        metavar="RETURN",
        help="with --env: the return a run must reach (default: the env's reward_threshold); a suite gives "
        "each of its tasks one",
    )
    bench_parser.add_argument("--seeds", type=int, default=5, help="number of seeds per agent and task (default 5)")
    bench_parser.add_argument(
        "--seed-start",
        type=int,
        default=0,
        metavar="N",
        help="first seed: seeds N .. N+seeds-1 (default 0; tune on some seeds, report on others: --seed-start 100)",
    )
    bench_parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="parallel runs (default: one per core)"
    )
    bench_parser.add_argument(
        "--backend", choices=BACKENDS, default="local", help="local processes (default) or a Ray cluster"
    )
    bench_parser.add_argument("--address", help="with --backend ray: the cluster to join (default: start a local one)")
    bench_parser.add_argument("--retries", type=int, default=2, help="restarts of a run whose worker died (default 2)")
    bench_parser.add_argument("--baseline", help="agent the others are compared with (default: the first)")
    bench_parser.add_argument("--name", help="results folder under runs/bench/ (default: the suite or env)")
    bench_parser.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="the grid goes to RUNS_DIR/bench/NAME/ (default: runs)"
    )
    bench_parser.add_argument(
        "--page",
        type=Path,
        metavar="FILE",
        help="also write the tables into this Markdown file (a docs page, the README), between "
        "<!-- bench:NAME --> and <!-- /bench:NAME -->, where NAME is --name",
    )
    bench_parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of every agent's recipe (repeatable)",
    )

    pretrain_parser = commands.add_parser(
        "pretrain", help="fit the representation module's state model on replay of a random (or given) policy"
    )
    pretrain_parser.add_argument("--env", required=True, help="Gymnasium environment id")
    pretrain_parser.add_argument(
        "--agent",
        default="ppo_ilvm_repr",
        help="recipe whose representation settings (model, batches) and observation wrapper to use",
    )
    pretrain_parser.add_argument("--steps", type=int, help="environment steps to collect (default: the recipe's)")
    pretrain_parser.add_argument("--fit-steps", type=int, help="gradient steps (default: the recipe's)")
    pretrain_parser.add_argument("--seed", type=int, default=0, help="seeds the environments, the policy and the model")
    pretrain_parser.add_argument(
        "--policy",
        type=Path,
        metavar="MODEL_ZIP",
        help="act with this SB3 model (of the recipe's algo) instead of at random",
    )
    pretrain_parser.add_argument(
        "--out", type=Path, help="checkpoint folder (default: runs/pretrained/<env>__<agent>__<seed>)"
    )
    pretrain_parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe setting, e.g. --set representation.model.latent_dim=32 (repeatable)",
    )

    plot_parser = commands.add_parser("plot", help="learning curves of run folders, for ad-hoc comparisons")
    plot_parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    plot_parser.add_argument(
        "--out", type=Path, help="PNG file to write (default: curves.png, or goal_rate.png with --goal-rate)"
    )
    plot_parser.add_argument(
        "--goal-rate",
        action="store_true",
        help="draw the share of training episodes per window of steps whose return reaches the threshold "
        "(found-then-lost shows as a rise and a fall); the numbers go to a CSV beside the PNG",
    )
    plot_parser.add_argument(
        "--window", type=int, metavar="STEPS", help=f"with --goal-rate: steps per window (default {GOAL_RATE_WINDOW:,})"
    )

    eval_parser = commands.add_parser(
        "evaluate", help="evaluate the final policy of run folders again, arg-max or sampled"
    )
    eval_parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    eval_parser.add_argument(
        "--policy",
        choices=("sampled", "argmax"),
        help="sample actions as in training, or take the most probable one (default: as the run's recipe evaluates)",
    )
    eval_parser.add_argument("--episodes", type=int, help="evaluation episodes (default: the recipe's)")

    world_parser = commands.add_parser(
        "world-model", help="fit the ILVM trajectory model and two reference models; score their sampled futures"
    )
    world_parser.add_argument("--env", required=True, help="Gymnasium id (vector observations)")
    world_parser.add_argument("--horizon", type=int, default=3, help="steps H of each future")
    world_parser.add_argument("--samples", type=int, default=10, help="K futures drawn per context")
    world_parser.add_argument("--steps", type=int, default=20_000, help="random-policy transitions for fitting")
    world_parser.add_argument("--fit-steps", type=int, default=3_000, help="gradient steps per model")
    world_parser.add_argument(
        "--seed", type=int, default=0, help="seeds the replay (held-out replay: other seeds) and models"
    )
    world_parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="the results go to RUNS_DIR/world_model/<env>__<seed>__<time>/",
    )
    add_threads_flag(world_parser)

    commands.add_parser("recipes", help="list the shipped agent recipes, each with what it is")
    return parser


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    """``--threads N``, torch's CPU threads for the command (:func:`set_threads`)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch's CPU threads (default 1: the networks are small, and runs often go side by side)",
    )


def set_threads(threads: int) -> None:
    """Give torch ``threads`` CPU threads (the ``--threads`` flag). Set here, by the command, and not
    in the library functions it calls: a script's own thread setting is its own, and a CNN policy
    may want more.

    Raises:
        ConfigError: fewer than one thread.
    """
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # the package's progress lines; other libraries' info (rliable logs each bootstrap) stays quiet
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("ilvm_rl").setLevel(logging.INFO)
    command = shlex.join(["ilvm-rl", *argv])
    try:
        if args.command == "recipes":
            names = recipe_names()
            width = max(map(len, names))
            print("\n".join(f"{name:<{width}}  {recipe_summary(name)}" for name in names))
        elif args.command == "train":
            train_command(args, command)
        elif args.command == "bench":
            return bench(args, command)
        elif args.command == "world-model":
            world_model(args, command)
        elif args.command == "pretrain":
            pretrain_command(args)
        elif args.command == "plot":
            plot(args)
        elif args.command == "evaluate":
            evaluate_command(args)
    except USER_ERRORS as error:
        # one line, whatever the message quotes (a YAML parser's report spans several)
        print(f"ilvm-rl: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0


def train_command(args: argparse.Namespace, command: str) -> None:
    """``ilvm-rl train``: a new run, or with ``--resume`` an interrupted one continued; prints the results."""
    set_threads(args.threads)
    progress_bar = not args.no_progress
    if args.resume is not None:
        given = [flag for flag in ("agent", "env", "seed", "steps", "threshold") if getattr(args, flag) is not None]
        if given or args.overrides:
            flags = ", ".join([f"--{flag}" for flag in given] + ["--set"] * bool(args.overrides))
            raise ConfigError(
                f"--resume continues {args.resume} with the settings it started with; drop {flags} "
                "(to change them, start a new run)"
            )
        print(json.dumps(resume(args.resume, progress_bar, command, args.device), indent=2))
        return
    if not args.agent or not args.env:
        raise ConfigError("train needs --agent and --env (or --resume RUN_DIR)")
    seed = checked_seed("--seed", 0 if args.seed is None else args.seed)
    overrides = parse_overrides(args.overrides)
    if args.device is not None:  # recorded with the recipe, so that a resume continues on it
        overrides["device"] = args.device
    spec = RunSpec(
        args.agent,
        args.env,
        seed,
        DEFAULT_STEPS if args.steps is None else args.steps,
        overrides,
        checked_threshold("--threshold", args.threshold),
    )
    recipe, _ = load_recipe(spec.agent, spec.env_id, spec.overrides)  # no run folder for a bad recipe
    torch_device(recipe.device)  # nor for a GPU the machine lacks
    run_dir = make_run_dir(args.runs_dir, spec)
    results = train(spec, run_dir, progress_bar=progress_bar, command=command)
    print(json.dumps(results, indent=2))
    print(f"run folder: {run_dir}\nTensorBoard: tensorboard --logdir {run_dir}")


def bench(args: argparse.Namespace, command: str) -> int:
    """``ilvm-rl bench``: exit 0 when every run finished, 1 when some failed."""
    if args.suite:
        if args.threshold is not None:
            raise ConfigError("--threshold sets the threshold of the --env task; a suite gives each task its own")
        suite, name = load_suite(args.suite, args.steps), Path(args.suite).stem
    else:
        steps = DEFAULT_STEPS if args.steps is None else args.steps
        threshold = checked_threshold("--threshold", args.threshold)
        suite, name = single_task_suite(args.env, steps, threshold), file_stem(args.env)
    bench_name = args.name or name
    if args.page:  # a missing section fails now, not after hours of runs
        surrounding_section(args.page, f"bench:{bench_name}")
    checked_seed("--seed-start", args.seed_start)
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    result = run_grid(
        bench_name,
        args.agents,
        suite,
        list(range(args.seed_start, args.seed_start + args.seeds)),
        args.runs_dir,
        workers=args.workers,
        backend=args.backend,
        address=args.address,
        retries=args.retries,
        baseline=args.baseline,
        overrides=parse_overrides(args.overrides),
        command=command,
    )
    if args.page:
        replace_section(args.page, f"bench:{bench_name}", result.report)
    print((result.bench_dir / "results.md").read_text())
    print(f"results: {result.bench_dir}")
    return 1 if result.failed else 0


def plot(args: argparse.Namespace) -> None:
    """``ilvm-rl plot``: learning curves, or with ``--goal-rate`` goal rates per window and their CSV."""
    from ilvm_rl.bench.plots import plot_goal_rates, plot_run_dirs, runs_by_task  # matplotlib only when plotting

    if args.goal_rate:
        window = GOAL_RATE_WINDOW if args.window is None else args.window
        png, table = plot_goal_rates(args.out or Path("goal_rate.png"), runs_by_task(args.run_dirs), window)
        print(f"wrote {png} and {table}")
    elif args.window is not None:
        raise ConfigError("--window sets the window of --goal-rate; add --goal-rate")
    else:
        print(f"wrote {plot_run_dirs(args.out or Path('curves.png'), args.run_dirs)}")


def evaluate_command(args: argparse.Namespace) -> None:
    """``ilvm-rl evaluate``: one JSON line per run folder with the final evaluation under the chosen
    policy (the run's own ``eval.json`` is left as it is)."""
    if args.episodes is not None and args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    for run_dir in args.run_dirs:
        spec, recipe = read_run_spec(run_dir)
        recipe = dataclasses.replace(
            recipe,
            eval_deterministic=recipe.eval_deterministic if args.policy is None else args.policy == "argmax",
            eval_episodes=args.episodes or recipe.eval_episodes,
        )
        agent = load_agent(run_dir / MODEL_FILE, spec.env_id, recipe, spec.seed)
        result = evaluate(agent, spec.env_id, spec.seed, recipe)
        threshold = spec.threshold if spec.threshold is not None else reward_threshold(spec.env_id)
        policy = "argmax" if recipe.eval_deterministic else "sampled"
        row = {"run": str(run_dir), "policy": policy, "mean_return": result["mean_return"]}
        print(json.dumps({**row, "kept": is_kept(result["mean_return"], threshold)}))


def sampled_actions(agent: Any, obs: Any) -> Any:
    """Actions a trained agent samples (not its deterministic choices: replay should vary)."""
    return agent.predict(obs, deterministic=False)[0]


def pretrain_command(args: argparse.Namespace) -> None:
    """``ilvm-rl pretrain``: write a state-model checkpoint that a recipe's ``representation.checkpoint`` names."""
    checked_seed("--seed", args.seed)
    recipe, _ = load_recipe(args.agent, args.env, parse_overrides(args.overrides))
    config = recipe.representation
    if config is None:
        raise ConfigError(f"pretrain: recipe {args.agent} has no representation section to take the model from")
    if args.fit_steps is not None:
        if args.fit_steps < 1:
            raise ConfigError(f"--fit-steps must be >= 1 (pretraining writes the fitted model), got {args.fit_steps}")
        try:
            config = dataclasses.replace(config, fit_steps=args.fit_steps)
        except ValueError as error:
            raise ConfigError(f"--fit-steps: {error}") from error
    policy = None
    if args.policy is not None:
        policy = partial(sampled_actions, load_agent(args.policy, args.env, recipe, args.seed))
    out = args.out or Path("runs") / "pretrained" / f"{file_stem(args.env)}__{Path(args.agent).stem}__{args.seed}"
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    make_folder(out, f"--out {out}")  # before the replay is collected, not after
    summary = pretrain(
        args.env,
        config,
        out,
        steps=args.steps,
        seed=args.seed,
        n_envs=recipe.n_envs,
        policy=policy,
        wrapper_class=observation_wrapper(args.env, recipe),
    )
    print(json.dumps(summary, indent=2))
    print(f"checkpoint: {out}\nuse it with --set representation.checkpoint={out}")


def world_model(args: argparse.Namespace, command: str) -> None:
    """``ilvm-rl world-model``: print the table and keep it in ``runs/world_model/<env>__<seed>__<time>/``."""
    check_env_id(args.env)
    checked_seed("--seed", args.seed)
    set_threads(args.threads)
    try:
        rows = run_world_model_benchmark(
            args.env, args.horizon, args.samples, args.steps, args.fit_steps, seed=args.seed
        )
    except ValueError as error:
        raise ConfigError(f"world-model: {error}") from error
    table = world_model_table(rows, args.samples)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = args.runs_dir / "world_model" / f"{file_stem(args.env)}__{args.seed}__{stamp}"
    make_folder(folder, f"--runs-dir {args.runs_dir}")
    settings = {key: getattr(args, key) for key in ("env", "horizon", "samples", "steps", "fit_steps", "seed")}
    (folder / "results.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    (folder / "results.md").write_text(f"# World model: {args.env}\n\n{table}\n\nCommand: `{command}`\n")
    print(f"{table}\nresults: {folder}")


def surrounding_section(path: Path, marker: str) -> tuple[str, str]:
    """The text of ``path`` before ``<!-- marker -->`` and after ``<!-- /marker -->``.

    Raises:
        ConfigError: if the file cannot be read or lacks either marker.
    """
    opening, closing = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    try:
        content = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it to write the tables into ({error.strerror})") from error
    if opening not in content or closing not in content:
        raise ConfigError(f"{path}: no section {opening} ... {closing} to write the tables into")
    head, rest = content.split(opening, 1)
    return head, rest.split(closing, 1)[1]


def replace_section(path: Path, marker: str, text: str) -> None:
    """Put ``text`` between ``<!-- marker -->`` and ``<!-- /marker -->`` in ``path`` (read afresh, so
    edits made while a grid ran are kept)."""
    head, tail = surrounding_section(path, marker)
    path.write_text(f"{head}<!-- {marker} -->\n{text}\n<!-- /{marker} -->{tail}")


if __name__ == "__main__":
    sys.exit(main())
