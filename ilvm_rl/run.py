"""Training a recipe into a run folder, and reading the results back.

A run folder ``runs/<env>__<agent>__<seed>__<time>/`` holds::

    command.txt        the exact command line
    config.yaml        the resolved recipe plus env id, seed and step budget
    tb/                TensorBoard events (and progress.csv)
    monitor/           one Monitor file per training environment (extrinsic returns)
    episodes.csv       every finished training episode: global step, extrinsic return, length
    model.zip          the SB3 model
    exploration/       the exploration module checkpoint (safetensors + JSON)
    representation_online/
                       online representation mode: the state model's replay, Adam's state and random
                       stream (safetensors + JSON; its weights and input scaling are the policy's, in
                       model.zip), saved with the pair
    replay.npz         off-policy agents: the replay buffer's arrays (numpy, no pickle), saved with the pair
    checkpoint.json    the step count, schedule position and training time model and module were saved at
                       (see :mod:`ilvm_rl.run_state`)
    representation/    the state model this run pretrained for its features extractor (frozen and
                       finetune modes without a checkpoint of their own; safetensors + JSON)
    eval.json          final evaluation: arg-max or sampled policy (eval_deterministic), separate env, extrinsic return
    results.json       summary: steps to threshold, found (the trailing mean reached the threshold),
                       kept (the final evaluation did), final return, share of steps on a noisy TV
                       (tasks that report one), steps per second and training time (all segments of
                       a resumed run, less the steps played again after a kill), provenance
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shlex
import shutil
import sys
import time
import warnings
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
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ProgressBarCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from tqdm import TqdmExperimentalWarning
from tqdm.rich import tqdm

from ilvm_rl.config import ConfigError, checked_seed, checked_threshold, from_dict, load_yaml, make_folder
from ilvm_rl.data.spaces import TransitionCodec, UnsupportedSpaceError, has_fixed_scale
from ilvm_rl.provenance import provenance
from ilvm_rl.recipes import ALGORITHMS, Device, Recipe, check_env_id, env_spec, file_stem, load_recipe
from ilvm_rl.representation.extractor import RepresentationCallback, load_pretrained, representation_policy_kwargs
from ilvm_rl.representation.pretrain import pretrain
from ilvm_rl.representation.state_model import read_settings
from ilvm_rl.run_state import (
    EXPLORATION_DIR,
    MODEL_FILE,
    ONLINE_REPRESENTATION_DIR,
    PENDING_DIR,
    REPLAY_FILE,
    STATE_FILE,
    RunState,
    continued_logger,
    load_weights,
    recover_pair,
    restore_position,
    restore_random_streams,
    restore_reward_scale,
    save_pair,
)
from ilvm_rl.sb3.callback import ExplorationCallback, with_exploration
from ilvm_rl.sb3.replay import ReplayExplorationCallback, load_replay, replay_exploration_kwargs, restore_module

EPISODES_FILE, RESULTS_FILE, EVAL_FILE = "episodes.csv", "results.json", "eval.json"
CONFIG_FILE, REPRESENTATION_DIR = "config.yaml", "representation"
# the observation spaces SB3's policies read (alone, or as the values of a Dict)
POLICY_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
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
            the final evaluation (kept); None takes the recipe's ``threshold``, else the env's
            ``reward_threshold``.
    """

    agent: str
    env_id: str
    seed: int
    steps: int
    overrides: dict[str, Any] | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        checked_seed("seed", self.seed)  # before a run folder is made
        checked_threshold("threshold", self.threshold)


class EpisodeRecorder(BaseCallback):
    """Appends each finished training episode to ``episodes.csv`` with the global step at which it
    ended, so steps-to-threshold is exact across parallel environments.

    Environments that put ``on_tv`` in their step infos (the noisy-TV tasks) also get the number of
    steps of the episode on which the TV played (``on_tv_steps``), and those that put ``depth`` there
    (the maze: moves from the start) the deepest the episode got (``deepest``, also logged as
    ``rollout/deepest``, the deepest of the rollout's finished episodes); both are empty for other
    environments.
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
            self.writer.writerow(["step", "return", "length", "on_tv_steps", "deepest"])
        n_envs = self.training_env.num_envs
        self.tv_steps = np.zeros(n_envs, dtype=np.int64)
        self.reports_tv = np.zeros(n_envs, dtype=bool)
        self.deepest = np.full(n_envs, -1, dtype=np.int64)  # -1: the env reports no depth
        self.rollout_deepest = -1

    def _on_step(self) -> bool:
        for index, info in enumerate(self.locals["infos"]):
            if "on_tv" in info:
                self.reports_tv[index] = True
                self.tv_steps[index] += bool(info["on_tv"])
            if "depth" in info:
                self.deepest[index] = max(self.deepest[index], int(info["depth"]))
            episode = info.get("episode")
            if episode is not None:
                on_tv = int(self.tv_steps[index]) if self.reports_tv[index] else ""
                deepest = int(self.deepest[index]) if self.deepest[index] >= 0 else ""
                self.writer.writerow([self.num_timesteps, float(episode["r"]), int(episode["l"]), on_tv, deepest])
                self.rollout_deepest = max(self.rollout_deepest, self.deepest[index])
                self.tv_steps[index] = 0
                self.deepest[index] = -1
        return True

    def _on_rollout_end(self) -> None:
        self.file.flush()
        if self.rollout_deepest >= 0:
            self.logger.record("rollout/deepest", int(self.rollout_deepest))
        self.rollout_deepest = -1

    def _on_training_end(self) -> None:
        self.file.close()


ModuleCallback = ExplorationCallback | ReplayExplorationCallback
"""The callback that holds a run's exploration module (on- or off-policy)."""


class PeriodicCheckpoint(BaseCallback):
    """Saves the SB3 model and the exploration module, as a pair, every ``every`` steps.

    Args:
        run_dir: the run folder.
        every: steps between checkpoints.
        exploration: the run's exploration callback, if any.
        clock: the run's training time so far, all segments together (recorded with each checkpoint).
        representation: the callback that trains an online representation, if any.
    """

    def __init__(
        self,
        run_dir: Path,
        every: int,
        exploration: ModuleCallback | None,
        clock: Callable[[], float],
        representation: RepresentationCallback | None = None,
    ):
        super().__init__()
        self.run_dir, self.every, self.exploration, self.clock = run_dir, every, exploration, clock
        self.representation = representation
        self.last = 0

    def _on_training_start(self) -> None:
        self.last = self.num_timesteps

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        # between rollouts everything collected so far has been trained on, by agent and module
        if self.num_timesteps - self.last >= self.every:
            self.last = self.num_timesteps
            save_checkpoint(self.run_dir, self.model, self.exploration, self.clock(), self.representation)


class RunProgressBar(ProgressBarCallback):
    """SB3's progress bar with the steps the run will play as its total. An agent plays whole
    collection calls (an on-policy rollout, an off-policy ``train_freq`` in steps), so a budget that is
    not a multiple of one ends past it, and SB3's bar, whose total is the budget, ends above 100%. When
    the agent collects whole episodes the length is not known ahead: the bar holds at 100% instead."""

    def _on_training_start(self) -> None:
        steps_per_call = self.training_env.num_envs
        if isinstance(self.model, OnPolicyAlgorithm):
            steps_per_call *= self.model.n_steps
        elif isinstance(self.model, OffPolicyAlgorithm):
            train_freq = self.model.train_freq  # a TrainFreq once SB3 sets the model up
            if isinstance(train_freq, TrainFreq) and train_freq.unit == TrainFrequencyUnit.STEP:
                steps_per_call *= train_freq.frequency
        remaining = self.locals["total_timesteps"] - self.model.num_timesteps
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)  # rich's bar, which SB3 uses too
            self.pbar = tqdm(total=-(-remaining // steps_per_call) * steps_per_call)

    def _on_step(self) -> bool:
        self.pbar.update(min(self.training_env.num_envs, self.pbar.total - self.pbar.n))
        return True


def save_checkpoint(
    run_dir: Path,
    model: Any,
    exploration: ModuleCallback | None,
    wall_time_s: float,
    representation: RepresentationCallback | None = None,
) -> None:
    """Write model and modules as one checkpoint (:func:`ilvm_rl.run_state.save_pair`)."""
    save_pair(run_dir, model, exploration.explorer if exploration is not None else None, wall_time_s, representation)


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


def deepest(run_dir: Path) -> int | None:
    """The deepest any training episode got (the environment's ``depth`` info, e.g. the maze's moves
    from the start); None when the environment does not report it."""
    with (run_dir / EPISODES_FILE).open() as file:
        depths = [int(row["deepest"]) for row in csv.DictReader(file) if row.get("deepest")]
    return max(depths) if depths else None


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
        record = load_yaml(config_path.read_text())
        run = {
            "agent": Path(record["agent"]).stem,
            "env_id": str(record["env_id"]),
            "steps": int(record["steps"]),
            "threshold": record.get("threshold"),
            "episodes": read_episodes(run_dir),
        }
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{config_path}: not a run configuration ({error})") from error
    if run["threshold"] is None:
        run["threshold"] = reward_threshold(run["env_id"])
    return run


def reward_threshold(env_id: str) -> float | None:
    """The ``reward_threshold`` registered for ``env_id`` (``module:Name-v0`` ids included)."""
    return env_spec(env_id).reward_threshold


def make_run_dir(root: Path, spec: RunSpec) -> Path:
    """A new, empty folder ``root/<env>__<agent>__<seed>__<time>`` for a run of ``spec``.

    Raises:
        ConfigError: ``root`` cannot hold folders (it names a file, or cannot be written).
    """
    make_folder(root, f"--runs-dir {root}")
    stem = f"{file_stem(spec.env_id)}__{Path(spec.agent).stem}__{spec.seed}__{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, suffix = root / stem, 1
    while run_dir.exists():
        suffix += 1
        run_dir = root / f"{stem}-{suffix}"
    run_dir.mkdir()
    return run_dir


def train(spec: RunSpec, run_dir: Path, progress_bar: bool = False, command: str | None = None) -> dict[str, Any]:
    """Train ``spec`` into ``run_dir`` (which must exist) and return the results summary. A start
    that fails before training begins removes ``run_dir``: nothing in it would be worth keeping.

    Raises:
        ConfigError: the recipe, environment id or spaces are not accepted (before anything trains).
    """
    try:
        return _train(spec, run_dir, progress_bar, command)
    except BaseException:
        if not has_started(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _train(spec: RunSpec, run_dir: Path, progress_bar: bool, command: str | None) -> dict[str, Any]:
    recipe, resolved = load_recipe(spec.agent, spec.env_id, spec.overrides)
    if spec.threshold is None:  # recorded with the run, so that resume, plot and evaluate judge by it too
        spec = dataclasses.replace(spec, threshold=recipe.threshold)
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
    return _learn(spec, recipe, run_dir, progress_bar, None, command)


def has_started(run_dir: Path) -> bool:
    """Whether training began in ``run_dir`` (its episode log is opened when it does): before that, a
    failed run leaves nothing worth keeping."""
    return (run_dir / EPISODES_FILE).exists()


def clear_outputs(run_dir: Path) -> None:
    """Remove what an earlier, unfinished attempt left in ``run_dir``."""
    for name in (EPISODES_FILE, RESULTS_FILE, EVAL_FILE, MODEL_FILE, STATE_FILE, REPLAY_FILE):
        (run_dir / name).unlink(missing_ok=True)
    for name in ("tb", "monitor", EXPLORATION_DIR, REPRESENTATION_DIR, ONLINE_REPRESENTATION_DIR, PENDING_DIR):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def read_run_spec(run_dir: Path) -> tuple[RunSpec, Recipe]:
    """The spec and resolved recipe a run folder was made with (its ``config.yaml``).

    Raises:
        ConfigError: the folder is not a run folder, or its configuration is malformed.
    """
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(
            f"{run_dir} does not exist"
            if not run_dir.exists()
            else f"{run_dir} is not a run folder: {CONFIG_FILE} is missing"
        )
    try:
        record = load_yaml(config_path.read_text())
        spec = RunSpec(
            record["agent"], record["env_id"], int(record["seed"]), int(record["steps"]), None, record.get("threshold")
        )
        recipe = from_dict(Recipe, record["recipe"], f"{config_path}: recipe")
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{config_path}: not a run configuration ({error})") from error
    check_env_id(spec.env_id)
    return spec, recipe


def resume(
    run_dir: Path, progress_bar: bool = False, command: str | None = None, device: Device | None = None
) -> dict[str, Any]:
    """Continue an interrupted run from its last checkpoint up to its step budget.

    The model is rebuilt from the run's recipe and only its tensors are loaded (no pickle); the logs
    are cut back to the checkpoint's step and continued. ``device`` (``auto``, ``cpu`` or ``cuda``)
    continues on another device than the recipe's: a checkpoint loads onto any.

    Raises:
        ConfigError: the folder is not a run or has finished.
        CheckpointError: it holds no checkpoint yet, or model and module do not belong together.
    """
    spec, recipe = read_run_spec(run_dir)
    if (run_dir / RESULTS_FILE).is_file():
        raise ConfigError(f"{run_dir} has finished ({RESULTS_FILE} exists); nothing to resume")
    if device is not None:
        recipe = dataclasses.replace(recipe, device=device)
    state = recover_pair(run_dir, with_exploration=recipe.exploration is not None)
    return _learn(spec, recipe, run_dir, progress_bar, state, command)


def check_spaces(env_id: str, observation_space: gym.Space, action_space: gym.Space, recipe: Recipe) -> None:
    """Refuse, before a policy is built, the spaces that SB3's policies or the recipe's modules
    cannot read.

    Raises:
        UnsupportedSpaceError: naming the env, the space and what is accepted.
    """
    parts = observation_space.spaces.values() if isinstance(observation_space, gym.spaces.Dict) else [observation_space]
    if not all(isinstance(part, POLICY_SPACES) for part in parts):
        raise UnsupportedSpaceError(
            f"{env_id}: observation space {observation_space} is not supported: the agent's policy reads a Box, "
            f"Discrete, MultiDiscrete or MultiBinary space, or a Dict of them (not nested); wrap the env to "
            f"turn it into one (e.g. gymnasium.wrappers.FlattenObservation for a Tuple)"
        )
    if not isinstance(action_space, POLICY_SPACES):
        raise UnsupportedSpaceError(
            f"{env_id}: action space {action_space} is not supported: the agent's policy acts in a Box, "
            f"Discrete, MultiDiscrete or MultiBinary space"
        )
    if recipe.exploration is not None or recipe.representation is not None:
        try:
            TransitionCodec(observation_space, action_space)
        except UnsupportedSpaceError as error:
            raise UnsupportedSpaceError(f"{env_id}: {error}") from error


def build_model(spec: RunSpec, recipe: Recipe, env: VecEnv) -> BaseAlgorithm:
    """The agent a recipe describes, built on ``env`` (untrained; the representation module's
    features extractor in place but not yet loaded).

    Raises:
        ConfigError: the algorithm refuses a setting of ``algo_kwargs`` (naming it).
    """
    algo_kwargs = with_replay_exploration(recipe, env.observation_space, spec.seed)
    if isinstance(algo_kwargs.get("train_freq"), list):  # YAML's [4, episode]; SB3 takes a tuple only
        algo_kwargs["train_freq"] = tuple(algo_kwargs["train_freq"])
    learning_rate_schedule = recipe.learning_rate_schedule()
    if learning_rate_schedule is not None:
        algo_kwargs["learning_rate"] = learning_rate_schedule
    if recipe.representation is not None:
        algo_kwargs["policy_kwargs"] = representation_policy_kwargs(
            recipe.representation, algo_kwargs.get("policy_kwargs")
        )
    device = torch_device(recipe.device)
    try:
        return ALGORITHMS[recipe.algo](recipe.policy, env, seed=spec.seed, device=device, verbose=0, **algo_kwargs)
    except UnsupportedSpaceError:
        raise
    except (ValueError, TypeError, AssertionError) as error:
        raise ConfigError(
            f"recipe {spec.agent} for {spec.env_id}: {recipe.algo} refuses the recipe's policy or algo_kwargs "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
        ) from error


def torch_device(name: str) -> torch.device:
    """The device a recipe's ``device`` names (``auto``: a GPU when torch sees one, else the CPU).

    Raises:
        ConfigError: ``cuda`` where torch sees no GPU.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device: 'cuda' asks for a GPU, and torch sees none (torch.cuda.is_available() is False); use cpu or auto"
        )
    return get_device(name)


def load_agent(path: Path, env_id: str, recipe: Recipe, seed: int = 0) -> BaseAlgorithm:
    """An agent with the weights of the SB3 model zip ``path``, loaded without pickle: the agent is
    rebuilt on the CPU from the recipe of the run folder that holds the zip (its ``config.yaml``), else
    from ``recipe``, and only the zip's tensors are read.

    Raises:
        ConfigError: no such file.
        CheckpointError: the zip is unreadable, or its weights do not fit the recipe's agent.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: no such model file")
    if (path.parent / CONFIG_FILE).is_file():
        recipe = read_run_spec(path.parent)[1]
    recipe = dataclasses.replace(recipe, device="cpu")  # it acts one observation at a time: a GPU gives nothing
    env = make_vec_env(
        partial(gym.make, env_id), n_envs=1, seed=seed, wrapper_class=observation_wrapper(env_id, recipe)
    )
    with warnings.catch_warnings():
        # PPO warns that one env's rollout does not split into the recipe's minibatches: this agent only acts
        warnings.filterwarnings("ignore", message="You have specified a mini-batch size")
        model = build_model(RunSpec(str(path), env_id, seed, 1), recipe, env)
    load_weights(model, path)
    return model


def _build(
    spec: RunSpec, recipe: Recipe, run_dir: Path, state: RunState | None
) -> tuple[VecEnv, BaseAlgorithm, ModuleCallback | None]:
    """The training env, the agent (from its checkpoint when ``state`` is given) and the exploration
    callback; a resume that fails here leaves no Monitor folder behind."""
    monitor = monitor_folder(run_dir, resume=state is not None)
    env: VecEnv | None = None
    try:
        probe = gym.make(spec.env_id)
        probe.close()
        check_spaces(spec.env_id, probe.observation_space, probe.action_space, recipe)
        env = make_vec_env(
            # a callable, not the id: given an id, SB3 asks for render_mode="rgb_array", which
            # tasks that render text (or nothing) warn about in every env of every run
            partial(gym.make, spec.env_id),
            n_envs=recipe.n_envs,
            seed=spec.seed,
            monitor_dir=str(monitor),
            wrapper_class=observation_wrapper(spec.env_id, recipe),
        )
        if recipe.normalize_reward:
            env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=recipe.algo_kwargs.get("gamma", 0.99))
            if state is not None and state.reward_scale is not None:
                restore_reward_scale(env, state.reward_scale)
        model = build_model(spec, recipe, env)
        exploration: ModuleCallback | None = None
        if state is not None:  # the features extractor's weights are part of the policy in model.zip
            load_weights(model, run_dir / MODEL_FILE)
            restore_position(model, state, spec.steps)
            if isinstance(model, OffPolicyAlgorithm):
                exploration = restore_replay(model, recipe, run_dir, spec.seed)
            elif recipe.exploration is not None:
                exploration = with_exploration(model, checkpoint=run_dir / EXPLORATION_DIR, seed=spec.seed)
            if state.random_streams is not None:  # last: building the agent and the module drew from them
                restore_random_streams(model, state.random_streams)
        else:
            if recipe.representation is not None:
                checkpoint = pretrained_checkpoint(spec, recipe, run_dir)
                if checkpoint is not None:  # after the policy is built: ortho_init has re-initialised the extractor
                    load_pretrained(model.policy, checkpoint)
            if recipe.exploration is not None and isinstance(model, OffPolicyAlgorithm):
                exploration = ReplayExplorationCallback()
            elif recipe.exploration is not None:
                exploration = ExplorationCallback(recipe.exploration, seed=spec.seed)
        return env, model, exploration
    except BaseException:
        if env is not None:
            env.close()
        if state is not None:
            shutil.rmtree(monitor, ignore_errors=True)
        raise


def _learn(
    spec: RunSpec, recipe: Recipe, run_dir: Path, progress_bar: bool, state: RunState | None, command: str | None
) -> dict[str, Any]:
    code = provenance()  # the code this process trains with, read before a long run lets the tree change
    env, model, exploration = _build(spec, recipe, run_dir, state)
    if state is not None:
        with (run_dir / "command.txt").open("a") as file:
            file.write((command or shlex.join(sys.argv)) + "\n")
        drop_episodes_after(run_dir, state.steps)  # those are played again
    model.set_logger(continued_logger(run_dir / "tb", state.steps if state is not None else None))
    earlier_wall = state.wall_time_s if state is not None else 0.0
    start, start_steps = time.perf_counter(), model.num_timesteps

    def clock() -> float:
        return earlier_wall + time.perf_counter() - start

    callbacks: list[BaseCallback] = [EpisodeRecorder(run_dir / EPISODES_FILE)]
    if exploration is not None:
        callbacks.append(exploration)
    representation = online_representation(recipe, run_dir, spec.seed, resume=state is not None)
    if representation is not None:
        callbacks.append(representation)
    if recipe.checkpoint_every:
        callbacks.append(PeriodicCheckpoint(run_dir, recipe.checkpoint_every, exploration, clock, representation))
    if progress_bar:
        callbacks.append(RunProgressBar())
    model.learn(spec.steps - start_steps, callback=CallbackList(callbacks), reset_num_timesteps=state is None)
    wall = clock()
    save_checkpoint(run_dir, model, exploration, wall, representation)
    env.close()
    evaluation = evaluate(model, spec.env_id, spec.seed, recipe)
    (run_dir / EVAL_FILE).write_text(json.dumps(evaluation, indent=2))
    # the steps played again after a kill are counted neither in the steps nor in the time
    return write_results(run_dir, spec, evaluation, model.num_timesteps, model.num_timesteps / wall, wall, code)


def online_representation(recipe: Recipe, run_dir: Path, seed: int, resume: bool) -> RepresentationCallback | None:
    """The callback that trains an ``online`` representation (None in other modes and without one);
    a resumed run's goes on from the checkpoint's replay and optimiser state."""
    if recipe.representation is None or recipe.representation.mode != "online":
        return None
    checkpoint: Path | None = run_dir / ONLINE_REPRESENTATION_DIR if resume else None
    if checkpoint is not None and not checkpoint.is_dir():
        warnings.warn(
            f"{checkpoint} is missing (a checkpoint written before the online representation's training was "
            "kept): its replay and optimiser start afresh, so the run does not continue as it would have",
            stacklevel=2,
        )
        checkpoint = None
    return RepresentationCallback(recipe.representation, seed=seed, checkpoint=checkpoint)


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
        # a last line without its end was cut short by a kill
        kept = [line for line in lines[1:] if line.endswith("\n") and int(line.split(",")[0]) <= step]
        partial = path.with_name(path.name + ".partial")
        partial.write_text("".join(lines[:1] + kept))
        partial.replace(path)


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
    run_dir: Path,
    spec: RunSpec,
    evaluation: dict[str, Any],
    steps_done: int,
    steps_per_second: float,
    wall: float,
    code: dict[str, Any],
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
        "deepest": deepest(run_dir),
        "steps_per_second": steps_per_second,
        "wall_time_s": wall,
        "provenance": code,
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
