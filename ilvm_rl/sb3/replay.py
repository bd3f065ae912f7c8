"""Stable-Baselines3 glue for off-policy algorithms (DQN, SAC, TD3): a replay buffer that carries the bonus.

The exploration module learns from the agent's own replay buffer; it keeps no copy of the transitions.
The bonus of a sampled batch is computed when the batch is sampled, by the model as it is then, on the
stored original observations: SB3's off-policy algorithms store what the environments returned and
apply ``VecNormalize`` at sample time, so the module never reads normalised observations. The bonus
is added to the sampled rewards after SB3's own reward normalisation.

One reward stream, the Q-function's, with the agent's discount γ. A bonus that is positive at every
step would pay the agent for staying alive, and make a goal that ends the episode a loss. So the
bonus is centred: ``β·(b − b̄)/σ``, where ``b̄`` is the mean raw bonus of the sampled batch, scored by
the same model at the same time, and ``σ`` the running std of the intrinsic return (the RND recipe).
Staying alive then earns nothing on average, and ending an episode forfeits nothing.
This is the non-episodic stream of the on-policy side in Q-learning's terms: adding, at each terminal
transition, the value of the intrinsic stream going on from the reset state, ``γ·β·b̄/(σ·(1 − γ))``
under a stationary bonus, gives the same Q-function plus the constant ``β·b̄/(σ·(1 − γ))`` everywhere
(the same greedy policy), but that constant would sit in every TD target (ten thousand times the
mean bonus at SAC's γ = 0.9999) and would tie the buffer to the agent's γ. Time-limit truncations
are bootstrapped by SB3 as they are without the bonus.

Usage::

    model = DQN("MlpPolicy", env, replay_buffer_class=ExplorationReplayBuffer,
                replay_buffer_kwargs={"config": {"bonus": "ilvm", "score": "novelty"}})
    model.learn(100_000, callback=ReplayExplorationCallback())

The callback hands the buffer the run's progress (needed for a β schedule), logs ``ilvm/`` tags and
saves the module; without it the buffer works only with a constant β (``int_coef_final: None``; the
default β falls to 0 over the run). The arrays of any SB3 replay buffer
are saved and restored without pickle by :func:`save_replay` and :func:`load_replay`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import DictReplayBufferSamples, ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

from ilvm_rl.checkpoint import CheckpointError
from ilvm_rl.config import from_dict, to_dict
from ilvm_rl.data.replay import TransitionBatch
from ilvm_rl.data.spaces import Observation
from ilvm_rl.exploration.checkpoint import load_explorer, save_explorer
from ilvm_rl.exploration.explorer import ExplorationConfig, Explorer

BUFFER_KEYS = ("config", "seed", "handle_timeout_termination")
HER_KEYS = ("goal_selection_strategy", "n_sampled_goal", "copy_info_dict", "env")
# transitions scored at once when the steps added since the last sample enter the running statistics
SCORE_CHUNK = 4096


def _rows(storage: np.ndarray | dict[str, np.ndarray], rows: np.ndarray, envs: np.ndarray) -> Observation:
    if isinstance(storage, dict):
        return {key: value[rows, envs] for key, value in storage.items()}
    return storage[rows, envs]


def _peek_env_indices(n: int, n_envs: int) -> np.ndarray:
    """The environment indices SB3's ``_get_samples`` is about to draw for ``n`` rows: it draws them
    first, from numpy's global stream; drawing them here and rewinding the stream leaves SB3 to draw
    the same ones, so the agent samples exactly what it would without the bonus."""
    state = np.random.get_state()
    indices = np.random.randint(0, high=n_envs, size=(n,))
    np.random.set_state(state)
    return indices


class ReplayBonus:
    """The exploration module beside an off-policy agent's replay buffer: scores sampled batches,
    trains on them and keeps the running statistics of the bonus.

    Args:
        buffer: the replay buffer whose arrays the module reads.
        config: exploration settings (see :class:`ExplorationConfig`; ``train_every`` sets the cadence).
        seed: seeds the model's weights and its own random streams.
    """

    def __init__(self, buffer: ReplayBuffer, config: ExplorationConfig, seed: int):
        self.buffer = buffer
        self.explorer = Explorer(
            config, buffer.observation_space, buffer.action_space, buffer.n_envs, seed, own_replay=False
        )
        # share of the run done, for the β schedule; set by ReplayExplorationCallback
        self.progress: float | None = None
        self.rows_added = 0  # steps added to the buffer, all envs at once
        self.rows_scored = 0  # of those, the ones whose bonus has entered the running statistics
        self.batches = 0
        # sums and counts of what was recorded since the last pop: constant memory, with or without a callback
        self.metrics: dict[str, tuple[float, int]] = {}
        action_space = buffer.action_space
        # SB3 stores Box actions rescaled to [-1, 1]; the module reads them as the environment took them
        self.action_bounds = (
            (action_space.low.astype(np.float32), action_space.high.astype(np.float32))
            if isinstance(action_space, spaces.Box)
            else None
        )

    def set_explorer(self, explorer: Explorer) -> None:
        """Use a restored module (from :func:`ilvm_rl.checkpoint.load_explorer`); which transitions
        of the buffer it has scored is the buffer's to say (:func:`load_replay`)."""
        if explorer.store is not None:
            raise CheckpointError(
                "the exploration checkpoint keeps a replay of its own: it was written by an on-policy run"
            )
        if explorer.n_envs != self.buffer.n_envs:
            raise CheckpointError(
                f"the exploration module was built for {explorer.n_envs} envs, "
                f"the replay buffer has {self.buffer.n_envs}"
            )
        self.explorer = explorer

    def transitions(self, rows: np.ndarray, envs: np.ndarray) -> TransitionBatch:
        """The stored transitions at ``(rows[k], envs[k])`` as the module reads them: original
        observations, actions in the environment's units, terminations apart from time limits."""
        buffer = self.buffer
        actions = buffer.actions[rows, envs].astype(np.float32)
        if self.action_bounds is not None:
            low, high = self.action_bounds
            actions = low + 0.5 * (actions + 1.0) * (high - low)
        dones, timeouts = buffer.dones[rows, envs] > 0, buffer.timeouts[rows, envs] > 0
        return self.explorer.codec.batch(
            _rows(buffer.observations, rows, envs),
            actions,
            _rows(buffer.next_observations, rows, envs),
            dones & ~timeouts,
            dones & timeouts,
        )

    def _score_new_transitions(self) -> None:
        """Score the steps added since the last sample, in order, once: they update the model's input
        statistics, the scale of the intrinsic return and the mean bonus, as a rollout does on-policy."""
        buffer = self.buffer
        new = min(self.rows_added - self.rows_scored, buffer.buffer_size)
        self.rows_scored = self.rows_added
        if new == 0:
            return
        # in chunks, in time order: the scale's per-env returns carry over from one chunk to the next,
        # and a long warm-up (learning_starts) never makes one huge batch
        steps_per_chunk = max(1, SCORE_CHUNK // buffer.n_envs)
        for start in range(0, new, steps_per_chunk):
            steps = min(steps_per_chunk, new - start)
            rows = (buffer.pos - new + start + np.arange(steps)) % buffer.buffer_size
            batch = self.transitions(np.repeat(rows, buffer.n_envs), np.tile(np.arange(buffer.n_envs), steps))
            raw, _ = self.explorer.score_rollout(batch, steps)
            self._record("new_int_reward_raw_mean", float(raw.mean()))

    def sample_bonus(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """The bonus ``β·(b − b̄)/σ`` of the sampled transitions ``(rows[k], envs[k])``, ``(n, 1)`` float32,
        always finite; every ``train_every``-th call the model then takes a gradient step on them.
        Once β is 0 for good (:meth:`Explorer.retired`) the bonus is 0, and the module neither
        scores nor trains any more."""
        explorer, config = self.explorer, self.explorer.config
        if self.progress is None and config.int_coef_final is not None:
            raise ValueError(
                "exploration int_coef_final sets a β schedule over the run, which the replay buffer can only "
                "follow with ReplayExplorationCallback in model.learn(callback=...)"
            )
        if explorer.retired(self.progress or 0.0):  # nothing the module computes would reach the agent
            self._record("int_coef", 0.0)
            return np.zeros((len(rows), 1), dtype=np.float32)
        self._score_new_transitions()
        batch = self.transitions(rows, envs)
        start = time.perf_counter()
        with explorer.own_torch_rng():
            raw, finite = explorer.finite_scores(batch)
        # the current model's own mean: scores taken when the transitions arrived came from an older
        # model, and centring on them would turn the bonus into a penalty while the model learns
        centre = float(raw[finite].mean()) if finite.any() else 0.0
        scaled = (raw - centre) / float(explorer.scaler.stats.std)
        beta = explorer.coefficient(self.progress or 0.0)
        bonus = beta * scaled
        bonus[~(finite & np.isfinite(bonus))] = 0.0  # a transition the model cannot score gets no bonus
        self._record("score_time_ms", 1000 * (time.perf_counter() - start))
        for name, values in (("int_reward_raw", raw), ("int_reward", scaled), ("int_bonus", bonus)):
            self._record(f"{name}_mean", float(values.mean()))
            self._record(f"{name}_max", float(values.max()))
        self._record("int_reward_raw_centre", centre)
        self._record("int_coef", beta)
        self._record("int_return_std", float(explorer.scaler.stats.std))
        self.batches += 1
        if self.batches % config.train_every == 0:
            start = time.perf_counter()
            for name, value in explorer.train_on([batch]).items():
                self._record(name, value)
            self._record("update_time_ms", 1000 * (time.perf_counter() - start))
        return bonus.astype(np.float32).reshape(-1, 1)

    def _record(self, name: str, value: float) -> None:
        total, count = self.metrics.get(name, (0.0, 0))
        self.metrics[name] = (total + value, count + 1)

    def pop_metrics(self) -> dict[str, float]:
        """Means of what was recorded since the last call, and the module's counters."""
        metrics = {name: total / count for name, (total, count) in self.metrics.items()}
        metrics.update({name: float(count) for name, count in self.explorer.counters.items()})
        self.metrics = {}
        return metrics


def _settings(
    optimize_memory_usage: bool, config: ExplorationConfig | Mapping[str, Any] | None, unknown: dict[str, Any]
) -> ExplorationConfig:
    """Check the buffer's keyword arguments and return its exploration settings."""
    for key in unknown:
        if key in HER_KEYS:
            raise TypeError(
                f"replay_buffer_kwargs: {key!r} is a HER setting; the exploration replay buffer does not relabel "
                f"goals (a relabelled transition's bonus is not defined): use HerReplayBuffer without the bonus"
            )
        raise TypeError(f"replay_buffer_kwargs: unknown key {key!r}; accepted keys: {', '.join(BUFFER_KEYS)}")
    if optimize_memory_usage:
        raise ValueError(
            "optimize_memory_usage=True is not supported with the exploration replay buffer: that mode keeps no "
            "next observation of its own, so the terminal observation of an episode is overwritten by the next "
            "episode's first one; set optimize_memory_usage=False"
        )
    if isinstance(config, Mapping):
        return from_dict(ExplorationConfig, dict(config), "replay_buffer_kwargs config")
    return config or ExplorationConfig()


class ExplorationReplayBuffer(ReplayBuffer):
    """SB3's replay buffer with the exploration bonus added to each sampled batch's rewards.

    Pass it as ``replay_buffer_class=`` to DQN, SAC or TD3 (:class:`ExplorationDictReplayBuffer` for
    Dict observations; :func:`exploration_replay_class` picks one), with its settings in
    ``replay_buffer_kwargs=``.

    Args:
        buffer_size, observation_space, action_space, device, n_envs, handle_timeout_termination:
            as SB3's :class:`~stable_baselines3.common.buffers.ReplayBuffer`.
        optimize_memory_usage: must be False: that mode overwrites the terminal observation of an
            episode, which the bonus reads.
        config: exploration settings, as an :class:`ExplorationConfig` or a plain mapping of its
            fields (as RL Baselines3 Zoo passes them).
        seed: seeds the module's weights and random streams.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: Any = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        config: ExplorationConfig | Mapping[str, Any] | None = None,
        seed: int = 0,
        **unknown: Any,
    ):
        settings = _settings(optimize_memory_usage, config, unknown)
        super().__init__(
            buffer_size,
            observation_space,  # type: ignore[arg-type]  # a Dict for the Dict variant
            action_space,
            device,
            n_envs=n_envs,
            optimize_memory_usage=False,
            handle_timeout_termination=handle_timeout_termination,
        )
        self.bonus = ReplayBonus(self, settings, seed)

    def add(self, *args: Any, **kwargs: Any) -> None:
        super().add(*args, **kwargs)
        self.bonus.rows_added += 1

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> ReplayBufferSamples | DictReplayBufferSamples:
        envs = _peek_env_indices(len(batch_inds), self.n_envs)
        samples = super()._get_samples(batch_inds, env)
        bonus = self.to_torch(self.bonus.sample_bonus(batch_inds, envs))
        return samples._replace(rewards=samples.rewards + bonus)


class ExplorationDictReplayBuffer(ExplorationReplayBuffer, DictReplayBuffer):  # type: ignore[misc]
    """:class:`ExplorationReplayBuffer` for Dict observation spaces (SB3's ``DictReplayBuffer``)."""


def exploration_replay_class(observation_space: spaces.Space) -> type[ExplorationReplayBuffer]:
    """The exploration replay buffer class for an observation space."""
    return ExplorationDictReplayBuffer if isinstance(observation_space, spaces.Dict) else ExplorationReplayBuffer


def replay_exploration_kwargs(config: ExplorationConfig, observation_space: spaces.Space, seed: int) -> dict[str, Any]:
    """``replay_buffer_class`` and ``replay_buffer_kwargs`` for an off-policy algorithm's constructor
    (plain values only, so that ``model.save`` stores them as JSON)."""
    return {
        "replay_buffer_class": exploration_replay_class(observation_space),
        "replay_buffer_kwargs": {"config": to_dict(config), "seed": seed},
    }


def check_batch_fits(buffer_size: int, batch_size: int) -> None:
    """Raise if a replay of ``buffer_size`` transitions cannot hold one batch of ``batch_size``."""
    if buffer_size < batch_size:
        raise ValueError(
            f"buffer_size={buffer_size} holds fewer transitions than one batch (batch_size={batch_size}); "
            f"raise buffer_size to at least batch_size"
        )


def exploration_buffer(model: BaseAlgorithm) -> ExplorationReplayBuffer:
    """The exploration replay buffer of an off-policy ``model``, or an error that says what to do."""
    name = type(model).__name__
    if isinstance(model, OnPolicyAlgorithm):
        raise TypeError(f"{name} is on-policy: its exploration module is ExplorationCallback, not a replay buffer")
    if not isinstance(model, OffPolicyAlgorithm):
        raise TypeError(
            f"{name} is neither an on-policy (PPO, A2C: ExplorationCallback) nor an off-policy "
            f"(DQN, SAC, TD3: ExplorationReplayBuffer) Stable-Baselines3 algorithm"
        )
    buffer = model.replay_buffer
    if isinstance(buffer, HerReplayBuffer):
        raise TypeError(
            f"{name} uses HerReplayBuffer: the exploration bonus does not support HER's relabelled goals; "
            f"train without HER or without the bonus"
        )
    if not isinstance(buffer, ExplorationReplayBuffer):
        raise TypeError(
            f"{name}'s replay buffer is a {type(buffer).__name__}: build the model with "
            f"replay_buffer_class=ExplorationReplayBuffer (ExplorationDictReplayBuffer for Dict observations)"
        )
    check_batch_fits(model.buffer_size, model.batch_size)
    return buffer


class ReplayExplorationCallback(BaseCallback):
    """Companion of :class:`ExplorationReplayBuffer`: gives the buffer the run's progress (β schedule),
    logs the module's metrics under ``ilvm/`` and saves the module.

    Args:
        checkpoint_dir: if set, :meth:`save` writes the module here.
        verbose: SB3 verbosity.
    """

    def __init__(self, checkpoint_dir: str | Path | None = None, verbose: int = 0):
        super().__init__(verbose)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.buffer: ExplorationReplayBuffer | None = None

    @property
    def explorer(self) -> Explorer | None:
        """The buffer's exploration module (None before ``learn`` starts), as ``ExplorationCallback.explorer``."""
        return self.buffer.bonus.explorer if self.buffer is not None else None

    def _init_callback(self) -> None:
        self.buffer = exploration_buffer(self.model)

    def _on_step(self) -> bool:
        assert self.buffer is not None
        self.buffer.bonus.progress = self.num_timesteps / self.model._total_timesteps
        return True

    def _on_rollout_start(self) -> None:
        # the agent has just trained on the batches these metrics describe
        assert self.buffer is not None
        for name, value in self.buffer.bonus.pop_metrics().items():
            self.logger.record_mean(f"ilvm/{name}", value)

    def save(self, folder: str | Path | None = None) -> Path:
        """Write the module's checkpoint (to ``checkpoint_dir`` unless ``folder`` is given)."""
        target = folder or self.checkpoint_dir
        if target is None or self.buffer is None:
            raise ValueError("nothing to save: no folder given, or the callback has not been initialised by learn()")
        return save_explorer(self.buffer.bonus.explorer, target)


def restore_module(model: BaseAlgorithm, folder: str | Path, seed: int = 0) -> None:
    """Load the module checkpoint in ``folder`` into ``model``'s exploration replay buffer."""
    buffer = exploration_buffer(model)
    explorer = load_explorer(folder, buffer.observation_space, buffer.action_space, buffer.n_envs, seed)
    buffer.bonus.set_explorer(explorer)


def _replay_arrays(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name in ("observations", "next_observations"):
        stored = getattr(buffer, name, None)
        if isinstance(stored, dict):
            arrays.update({f"{name}.{key}": value for key, value in stored.items()})
        elif stored is not None:  # optimize_memory_usage keeps no next observations
            arrays[name] = stored
    for name in ("actions", "rewards", "dones", "timeouts"):
        arrays[name] = getattr(buffer, name)
    return arrays


def save_replay(buffer: ReplayBuffer, path: str | Path) -> Path:
    """Write a replay buffer's arrays and position to ``path`` (numpy ``.npz``, no pickle), atomically;
    for an exploration replay buffer, also how many of its latest steps the module has not scored yet
    (``unscored_steps``: those of a warm-up, ``learning_starts``, before any batch was sampled)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as file:
        arrays = {**_replay_arrays(buffer), "pos": np.array(buffer.pos), "full": np.array(buffer.full)}
        if isinstance(buffer, ExplorationReplayBuffer):
            arrays["unscored_steps"] = np.array(buffer.bonus.rows_added - buffer.bonus.rows_scored)
        np.savez(file, **arrays)  # type: ignore[arg-type]  # numpy's stub reads ** as its allow_pickle flag
    partial.replace(path)
    return path


def load_replay(buffer: ReplayBuffer, path: str | Path) -> None:
    """Restore arrays written by :func:`save_replay` into a freshly built buffer of the same shape.

    Raises:
        CheckpointError: the file is missing or unreadable, or an array is missing or of another
            shape or dtype than the buffer's (another buffer_size, n_envs or space).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the replay buffer of an off-policy run is saved there")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a saved replay buffer ({error})") from error
    targets = _replay_arrays(buffer)
    for name, target in targets.items():
        if name not in arrays:
            raise CheckpointError(f"{path}: array {name!r} is missing; the file holds {', '.join(sorted(arrays))}")
        if arrays[name].shape != target.shape or arrays[name].dtype != target.dtype:
            raise CheckpointError(
                f"{path}: array {name!r} is {arrays[name].dtype}{list(arrays[name].shape)}, the buffer's is "
                f"{target.dtype}{list(target.shape)} (another buffer_size, n_envs or space?)"
            )
    for name, target in targets.items():
        target[...] = arrays[name]
    if "pos" not in arrays or "full" not in arrays:
        raise CheckpointError(f"{path}: the buffer's position ('pos', 'full') is missing")
    buffer.pos, buffer.full = int(arrays["pos"]), bool(arrays["full"])
    if isinstance(buffer, ExplorationReplayBuffer):
        # the steps the module had not scored are scored at the next sample, as they would have been
        unscored = int(arrays["unscored_steps"]) if "unscored_steps" in arrays else 0  # older files: none
        buffer.bonus.rows_added = buffer.size()
        buffer.bonus.rows_scored = buffer.size() - min(unscored, buffer.size())
