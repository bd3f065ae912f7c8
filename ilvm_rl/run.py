"""Training a recipe into a run folder, and reading the results back.

A run folder ``runs/<env>__<agent>__<seed>__<time>/`` holds::

    command.txt        the exact command line
    config.yaml        the resolved recipe plus env id, seed and step budget
    tb/                TensorBoard events (and progress.csv)
    monitor/           one Monitor file per training environment (extrinsic returns)
    episodes.csv       every finished training episode: global step, extrinsic return, length
    model.zip          the SB3 model
    exploration/       the exploration module checkpoint (safetensors + JSON)
    replay.npz         off-policy agents: the replay buffer's arrays (numpy, no pickle), for --resume
    representation/    the state model this run pretrained for its features extractor (frozen and
                       finetune modes without a checkpoint of their own; safetensors + JSON)
    eval.json          final evaluation: arg-max or sampled policy (eval_deterministic), separate env, extrinsic return
    results.json       summary: steps to threshold, found (the trailing mean reached the threshold),
                       kept (the final evaluation did), final return, share of steps on a noisy TV
                       (tasks that report one), steps per second
"""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from gymnasium.wrappers import RescaleObservation
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from ilvm_rl.config import ConfigError, from_dict
from ilvm_rl.exploration.spaces import has_fixed_scale
from ilvm_rl.provenance import provenance
from ilvm_rl.recipes import ALGORITHMS, Recipe, load_recipe
from ilvm_rl.representation.extractor import RepresentationCallback, load_pretrained, representation_policy_kwargs
from ilvm_rl.representation.pretrain import pretrain
from ilvm_rl.representation.state_model import read_settings
from ilvm_rl.sb3.callback import ExplorationCallback, with_exploration
from ilvm_rl.sb3.replay import (
    ReplayExplorationCallback,
    load_replay,
    replay_exploration_kwargs,
    restore_module,
    save_replay,
)

EPISODES_FILE, RESULTS_FILE, EVAL_FILE = "episodes.csv", "results.json", "eval.json"
CONFIG_FILE, MODEL_FILE, EXPLORATION_DIR = "config.yaml", "model.zip", "exploration"
REPLAY_FILE = "replay.npz"
REPRESENTATION_DIR, REWARD_SCALE_FILE = "representation", "reward_scale.json"
# the trailing window over which training returns are compared with the env's reward threshold
THRESHOLD_WINDOW = 10
# evaluation environments are seeded away from the training ones
EVAL_SEED_OFFSET = 10_000


@dataclass(frozen=True)
class RunSpec:
    """What to train: a recipe on an environment with a seed and a step budget.

    Attributes:
        agent: recipe name or path.
        env_id: a Gymnasium id.
        seed: seeds the agent, the module and the environments.
        steps: environment steps (all parallel environments together).
        overrides: recipe settings merged last.
        threshold: the return a run must reach: the trailing mean of training returns (found) and
            the final evaluation (kept); None takes the env's ``reward_threshold``.
    """

    agent: str
    env_id: str
    seed: int
    steps: int
    overrides: dict[str, Any] | None = None
    threshold: float | None = None


class EpisodeRecorder(BaseCallback):
    """Appends each finished training episode to ``episodes.csv`` with the global step at which it
    ended, so steps-to-threshold is exact across parallel environments.

    Environments that put ``on_tv`` in their step infos (the noisy-TV tasks) also get the number of
    steps of the episode on which the TV played (``on_tv_steps``; empty for other environments).
    """

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.file: Any = None
        self.writer: Any = None

    def _on_training_start(self) -> None:
        new = not self.path.exists()
        self.file = self.path.open("a", newline="")
        self.writer = csv.writer(self.file)
        if new:
            self.writer.writerow(["step", "return", "length", "on_tv_steps"])
        self.tv_steps = np.zeros(self.training_env.num_envs, dtype=np.int64)
        self.reports_tv = np.zeros(self.training_env.num_envs, dtype=bool)

    def _on_step(self) -> bool:
        for index, info in enumerate(self.locals["infos"]):
            if "on_tv" in info:
                self.reports_tv[index] = True
                self.tv_steps[index] += bool(info["on_tv"])
            episode = info.get("episode")
            if episode is not None:
                on_tv = int(self.tv_steps[index]) if self.reports_tv[index] else ""
                self.writer.writerow([self.num_timesteps, float(episode["r"]), int(episode["l"]), on_tv])
                self.tv_steps[index] = 0
        return True

    def _on_rollout_end(self) -> None:
        self.file.flush()

    def _on_training_end(self) -> None:
        self.file.close()


ModuleCallback = ExplorationCallback | ReplayExplorationCallback
"""The callback that holds a run's exploration module (on- or off-policy)."""


class PeriodicCheckpoint(BaseCallback):
    """Saves the SB3 model, its replay buffer (off-policy) and the exploration module every ``every`` steps."""

    def __init__(self, run_dir: Path, every: int, exploration: ModuleCallback | None):
        super().__init__()
        self.run_dir, self.every, self.exploration = run_dir, every, exploration
        self.last = 0

    def _on_training_start(self) -> None:
        self.last = self.num_timesteps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        # between rollouts everything collected so far has been trained on, by agent and module
        if self.num_timesteps - self.last >= self.every:
            self.last = self.num_timesteps
            save_checkpoint(self.run_dir, self.model, self.exploration)


def save_checkpoint(run_dir: Path, model: Any, exploration: ModuleCallback | None) -> None:
    # a kill during the write must not destroy the previous checkpoint
    partial_file = run_dir / (MODEL_FILE + ".partial")
    model.save(partial_file)
    partial_file.replace(run_dir / MODEL_FILE)
    if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:  # model.save leaves it out
        save_replay(model.replay_buffer, run_dir / REPLAY_FILE)
    if exploration is not None:
        exploration.save(run_dir / EXPLORATION_DIR)
    reward_normalizer = model.get_vec_normalize_env()
    if reward_normalizer is not None:
        save_reward_scale(run_dir, reward_normalizer)


def save_reward_scale(run_dir: Path, normalizer: VecNormalize) -> None:
    """The running statistics of ``normalize_reward`` as JSON (``VecNormalize.save`` would pickle)."""
    stats = normalizer.ret_rms
    state = {
        "mean": float(stats.mean),
        "var": float(stats.var),
        "count": float(stats.count),
        "returns": normalizer.returns.tolist(),
    }
    partial_file = run_dir / (REWARD_SCALE_FILE + ".partial")
    partial_file.write_text(json.dumps(state))
    partial_file.replace(run_dir / REWARD_SCALE_FILE)


def load_reward_scale(run_dir: Path, normalizer: VecNormalize) -> None:
    """Restore what :func:`save_reward_scale` wrote (nothing when the run saved none)."""
    path = run_dir / REWARD_SCALE_FILE
    if not path.is_file():
        return
    try:
        state = json.loads(path.read_text())
        normalizer.ret_rms.mean = np.asarray(float(state["mean"]))
        normalizer.ret_rms.var = np.asarray(float(state["var"]))
        normalizer.ret_rms.count = float(state["count"])
        normalizer.returns = np.asarray(state["returns"], dtype=np.float64).reshape(normalizer.returns.shape)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path}: not a reward scale written by ilvm-rl ({error})") from error


def steps_to_threshold(
    episodes: list[tuple[int, float]], threshold: float, window: int = THRESHOLD_WINDOW
) -> int | None:
    """First global step at which the mean of the last ``window`` training returns reaches ``threshold``.

    Args:
        episodes: ``(step, return)`` of finished episodes in the order they ended.
    """
    returns = [r for _, r in episodes]
    for index in range(window - 1, len(episodes)):
        if np.mean(returns[index - window + 1 : index + 1]) >= threshold:
            return episodes[index][0]
    return None


def tv_share(run_dir: Path) -> float | None:
    """Share of the training steps of finished episodes on which a noisy TV played; None when the
    environment does not report ``on_tv``."""
    with (run_dir / EPISODES_FILE).open() as file:
        rows = [row for row in csv.DictReader(file) if row.get("on_tv_steps")]
    if not rows:
        return None
    return sum(int(row["on_tv_steps"]) for row in rows) / sum(int(row["length"]) for row in rows)


def read_episodes(run_dir: Path) -> list[tuple[int, float]]:
    """``(step, extrinsic return)`` of every training episode of a run."""
    with (run_dir / EPISODES_FILE).open() as file:
        return [(int(row["step"]), float(row["return"])) for row in csv.DictReader(file)]


def read_run(run_dir: Path) -> dict[str, Any]:
    """What a plot needs of a run folder: agent, env id, step budget, threshold and episodes.

    Raises:
        ConfigError: the folder is not a run folder.
    """
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file() or not (run_dir / EPISODES_FILE).is_file():
        raise ConfigError(f"{run_dir} is not a run folder: it needs {CONFIG_FILE} and {EPISODES_FILE}")
    try:
        record = yaml.safe_load(config_path.read_text())
        env_id = record["env_id"]
        threshold = record.get("threshold")
        return {
            "agent": Path(record["agent"]).stem,
            "env_id": env_id,
            "steps": int(record["steps"]),
            "threshold": threshold if threshold is not None else reward_threshold(env_id),
            "episodes": read_episodes(run_dir),
        }
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{config_path}: not a run configuration ({error})") from error


def reward_threshold(env_id: str) -> float | None:
    return gym.spec(env_id).reward_threshold


def make_run_dir(root: Path, spec: RunSpec) -> Path:
    agent = Path(spec.agent).stem
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = root / f"{spec.env_id.replace('/', '-')}__{agent}__{spec.seed}__{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{spec.env_id.replace('/', '-')}__{agent}__{spec.seed}__{stamp}-{suffix}"
    run_dir.mkdir(parents=True)
    return run_dir


def train(spec: RunSpec, run_dir: Path, progress_bar: bool = False, command: str | None = None) -> dict[str, Any]:
    """Train ``spec`` into ``run_dir`` (which must exist) and return the results summary.

    Raises:
        ConfigError: the recipe, environment id or spaces are not accepted (before anything trains).
    """
    recipe, resolved = load_recipe(spec.agent, spec.env_id, spec.overrides)
    if spec.steps < 1:
        raise ConfigError(f"steps must be >= 1, got {spec.steps}")
    if recipe.representation is not None and recipe.representation.checkpoint is not None:
        read_settings(recipe.representation.checkpoint)  # a missing checkpoint fails before anything runs
    clear_outputs(run_dir)  # a cell of an interrupted grid starts again from nothing
    (run_dir / "command.txt").write_text((command or shlex.join(sys.argv)) + "\n")
    record = {
        "agent": spec.agent,
        "env_id": spec.env_id,
        "seed": spec.seed,
        "steps": spec.steps,
        "threshold": spec.threshold,
        "recipe": resolved,
    }
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(record, sort_keys=False))
    return _learn(spec, recipe, run_dir, progress_bar, resume=False)


def clear_outputs(run_dir: Path) -> None:
    """Remove what an earlier, unfinished attempt left in ``run_dir``."""
    for name in (EPISODES_FILE, RESULTS_FILE, EVAL_FILE, MODEL_FILE, REPLAY_FILE):
        (run_dir / name).unlink(missing_ok=True)
    for name in ("tb", "monitor", EXPLORATION_DIR, REPRESENTATION_DIR):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def resume(run_dir: Path, progress_bar: bool = False, command: str | None = None) -> dict[str, Any]:
    """Continue an interrupted run from its last checkpoint up to its step budget.

    Raises:
        ConfigError: the folder is not a run, has finished, or holds no checkpoint yet.
    """
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder: {CONFIG_FILE} is missing")
    if (run_dir / RESULTS_FILE).is_file():
        raise ConfigError(f"{run_dir} has finished ({RESULTS_FILE} exists); nothing to resume")
    if not (run_dir / MODEL_FILE).is_file():
        raise ConfigError(f"{run_dir} holds no checkpoint yet ({MODEL_FILE}); set checkpoint_every in the recipe")
    try:
        record = yaml.safe_load(config_path.read_text())
        spec = RunSpec(
            record["agent"], record["env_id"], int(record["seed"]), int(record["steps"]), None, record.get("threshold")
        )
        recipe = from_dict(Recipe, record["recipe"], f"{config_path}: recipe")
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{config_path}: not a run configuration ({error})") from error
    with (run_dir / "command.txt").open("a") as file:
        file.write((command or shlex.join(sys.argv)) + "\n")
    return _learn(spec, recipe, run_dir, progress_bar, resume=True)


def _learn(spec: RunSpec, recipe: Recipe, run_dir: Path, progress_bar: bool, resume: bool) -> dict[str, Any]:
    torch.set_num_threads(1)  # small networks: threads cost more than they give, and runs go in parallel
    env = make_vec_env(
        spec.env_id,
        n_envs=recipe.n_envs,
        seed=spec.seed,
        monitor_dir=str(monitor_folder(run_dir, resume)),
        wrapper_class=observation_wrapper(spec.env_id, recipe),
    )
    if recipe.normalize_reward:
        gamma = recipe.algo_kwargs.get("gamma", 0.99)
        env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=gamma)
        if resume:
            load_reward_scale(run_dir, env)
    algo = ALGORITHMS[recipe.algo]
    off_policy = issubclass(algo, OffPolicyAlgorithm)
    exploration: ModuleCallback | None = None
    representation = recipe.representation
    if resume:  # the features extractor's weights are part of the policy in model.zip
        model = algo.load(run_dir / MODEL_FILE, env=env, device="cpu")
        if isinstance(model, OffPolicyAlgorithm):
            exploration = restore_replay(model, recipe, run_dir, spec.seed)
        elif recipe.exploration is not None:
            exploration = with_exploration(model, checkpoint=run_dir / EXPLORATION_DIR, seed=spec.seed)
        drop_episodes_after(run_dir, model.num_timesteps)  # those are played again
    else:
        algo_kwargs = with_replay_exploration(recipe, env.observation_space, spec.seed)
        if representation is not None:
            algo_kwargs["policy_kwargs"] = representation_policy_kwargs(
                representation, algo_kwargs.get("policy_kwargs")
            )
        model = algo(recipe.policy, env, seed=spec.seed, device="cpu", verbose=0, **algo_kwargs)
        if representation is not None:
            checkpoint = pretrained_checkpoint(spec, recipe, run_dir)
            if checkpoint is not None:  # after the policy is built: ortho_init has re-initialised the extractor
                load_pretrained(model.policy, checkpoint)
        if recipe.exploration is not None:
            exploration = (
                ReplayExplorationCallback() if off_policy else ExplorationCallback(recipe.exploration, seed=spec.seed)
            )
    model.set_logger(configure(str(run_dir / "tb"), ["tensorboard", "csv"]))
    callbacks: list[BaseCallback] = [EpisodeRecorder(run_dir / EPISODES_FILE)]
    if exploration is not None:
        callbacks.append(exploration)
    if representation is not None and representation.mode == "online":
        callbacks.append(RepresentationCallback(representation, seed=spec.seed))
    if recipe.checkpoint_every:
        callbacks.append(PeriodicCheckpoint(run_dir, recipe.checkpoint_every, exploration))

    start, start_steps = time.perf_counter(), model.num_timesteps
    model.learn(
        spec.steps - model.num_timesteps,
        callback=CallbackList(callbacks),
        progress_bar=progress_bar,
        reset_num_timesteps=not resume,
    )
    wall = time.perf_counter() - start
    save_checkpoint(run_dir, model, exploration)
    env.close()
    evaluation = evaluate(model, spec.env_id, spec.seed, recipe)
    (run_dir / EVAL_FILE).write_text(json.dumps(evaluation, indent=2))
    return write_results(
        run_dir, spec, evaluation, model.num_timesteps, (model.num_timesteps - start_steps) / wall, wall
    )


def with_replay_exploration(recipe: Recipe, observation_space: gym.Space, seed: int) -> dict[str, Any]:
    """A copy of the recipe's ``algo_kwargs``; for an off-policy algorithm with an exploration section,
    with the exploration replay buffer and its settings (the recipe's ``replay_buffer_kwargs`` kept)."""
    algo_kwargs = dict(recipe.algo_kwargs)
    if recipe.exploration is not None and issubclass(ALGORITHMS[recipe.algo], OffPolicyAlgorithm):
        bonus_kwargs = replay_exploration_kwargs(recipe.exploration, observation_space, seed)
        bonus_kwargs["replay_buffer_kwargs"].update(algo_kwargs.get("replay_buffer_kwargs") or {})
        algo_kwargs.update(bonus_kwargs)
    return algo_kwargs


def restore_replay(
    model: OffPolicyAlgorithm, recipe: Recipe, run_dir: Path, seed: int
) -> ReplayExplorationCallback | None:
    """Resuming an off-policy run: load its replay buffer (``replay.npz``) into ``model``'s fresh one and,
    with an exploration section, its module; returns the module's callback (None without one)."""
    assert model.replay_buffer is not None  # an off-policy model builds its buffer with the model
    load_replay(model.replay_buffer, run_dir / REPLAY_FILE)
    if recipe.exploration is None:
        return None
    restore_module(model, run_dir / EXPLORATION_DIR, seed=seed)
    return ReplayExplorationCallback()


def pretrained_checkpoint(spec: RunSpec, recipe: Recipe, run_dir: Path) -> Path | None:
    """The state model a run's features extractor starts from: the recipe's checkpoint; else, for the
    frozen and finetune modes, one the run pretrains into its own folder (seeded by the run, so seeds
    stay independent); else none (online mode starts from scratch)."""
    config = recipe.representation
    assert config is not None
    if config.checkpoint is not None:
        return Path(config.checkpoint)
    if config.mode == "online":
        return None
    folder = run_dir / REPRESENTATION_DIR
    pretrain(
        spec.env_id,
        config,
        folder,
        seed=spec.seed,
        n_envs=recipe.n_envs,
        wrapper_class=observation_wrapper(spec.env_id, recipe),
    )
    return folder


def monitor_folder(run_dir: Path, resume: bool) -> Path:
    """``monitor/`` for a fresh run; ``monitor/resume-N/`` for the N-th resumed segment, so the
    Monitor files of a segment never mix with episodes played again after a checkpoint."""
    root = run_dir / "monitor"
    if not resume:
        return root
    segment = 1
    while (root / f"resume-{segment}").exists():
        segment += 1
    return root / f"resume-{segment}"


def drop_episodes_after(run_dir: Path, step: int) -> None:
    """Forget recorded episodes that ended after ``step`` (the checkpoint a run resumes from)."""
    path = run_dir / EPISODES_FILE
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:1] + [line for line in lines[1:] if int(line.split(",")[0]) <= step]))


def observation_wrapper(env_id: str, recipe: Recipe) -> Callable[[gym.Env], gym.Env] | None:
    """The per-env wrapper that applies ``recipe.normalize_obs`` (None for ``none``)."""
    if recipe.normalize_obs == "none":
        return None
    space = gym.make(env_id).observation_space
    if not (isinstance(space, gym.spaces.Box) and has_fixed_scale(space)):
        raise ConfigError(
            f"normalize_obs: 'bounds' needs a Box observation space with finite bounds; {env_id} has {space}"
        )
    return partial(RescaleObservation, min_obs=np.float32(-1.0), max_obs=np.float32(1.0))


def evaluate(model: Any, env_id: str, seed: int, recipe: Recipe) -> dict[str, Any]:
    """The policy (arg-max or sampled, by the recipe) on a separate, differently seeded env; extrinsic
    return only."""
    eval_env = gym.make(env_id)
    wrapper = observation_wrapper(env_id, recipe)
    eval_env = Monitor(wrapper(eval_env) if wrapper else eval_env)
    eval_env.reset(seed=seed + EVAL_SEED_OFFSET)
    returns, lengths = evaluate_policy(
        model,
        eval_env,
        n_eval_episodes=recipe.eval_episodes,
        deterministic=recipe.eval_deterministic,
        return_episode_rewards=True,
    )
    eval_env.close()
    assert isinstance(returns, list) and isinstance(lengths, list)  # return_episode_rewards=True
    return {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": [float(r) for r in returns],
        "lengths": [int(n) for n in lengths],
        "deterministic": recipe.eval_deterministic,
    }


def write_results(
    run_dir: Path, spec: RunSpec, evaluation: dict[str, Any], steps_done: int, steps_per_second: float, wall: float
) -> dict[str, Any]:
    threshold = spec.threshold if spec.threshold is not None else reward_threshold(spec.env_id)
    reached = steps_to_threshold(read_episodes(run_dir), threshold) if threshold is not None else None
    results = {
        "agent": Path(spec.agent).stem,
        "env_id": spec.env_id,
        "seed": spec.seed,
        "steps": steps_done,
        "reward_threshold": threshold,
        "steps_to_threshold": reached,
        "found": reached is not None,
        "kept": is_kept(evaluation["mean_return"], threshold),
        "final_eval_return": evaluation["mean_return"],
        "tv_share": tv_share(run_dir),
        "steps_per_second": steps_per_second,
        "wall_time_s": wall,
        "provenance": provenance(),
    }
    (run_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2))
    return results


def is_kept(final_eval_return: float, threshold: float | None) -> bool | None:
    """Whether the policy at the end of the run still reaches the threshold (None without one)."""
    return None if threshold is None else bool(final_eval_return >= threshold)


def upgraded_results(results: dict[str, Any]) -> dict[str, Any]:
    """``results`` (of ``results.json`` or a grid cell) with ``found`` and ``kept``: files written
    before those existed call ``found`` ``solved`` and lack ``kept``."""
    upgraded = dict(results)
    if "found" not in upgraded:
        upgraded["found"] = bool(upgraded.pop("solved"))
    if "kept" not in upgraded:
        upgraded["kept"] = is_kept(upgraded["final_eval_return"], upgraded.get("reward_threshold"))
    return upgraded
