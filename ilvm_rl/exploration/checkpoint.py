"""Checkpoints of the exploration module: tensors in safetensors, settings in JSON, no pickle.

A checkpoint folder holds ``weights.safetensors`` (bonus model, intrinsic value function and their
optimisers, running statistics, the replay unless the module learns from an off-policy agent's replay
buffer, the module's random stream) and ``settings.json`` (format version, module settings, the spaces
it was built for, whether it keeps a replay of its own).

The episodes in progress are not kept (their intrinsic returns so far, whether the task spoke in
them): a loaded module serves environments that start new episodes, and a flag of an episode that
never ends would count at the next episode end (written by earlier versions, they are ignored).
Nor are the running statistics of the raw bonus (``stats.raw_reward.*``), which centred the
off-policy bonus before it was centred on each sampled batch: earlier versions wrote them, and a
load ignores them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from ilvm_rl.checkpoint import (
    SETTINGS_FILE,
    CheckpointError,
    array_tensors,
    check_spaces,
    describe_space,
    load_optimisers,
    optimiser_tensors,
    prefixed_arrays,
    read_json,
    read_settings,
    read_tensors,
    write_checkpoint,
)
from ilvm_rl.config import ConfigError, from_dict, to_dict
from ilvm_rl.exploration.bonus import BonusModel
from ilvm_rl.exploration.explorer import ExplorationConfig, Explorer
from ilvm_rl.exploration.streams import IntrinsicCritic

# 2: the intrinsic value function, the module's torch random stream, statistics by part
# 3: one settings class per bonus (exploration.bonus names it)
FORMAT_VERSION = 3
KIND = "exploration checkpoint"


def _trained_parts(explorer: Explorer) -> dict[str, BonusModel | IntrinsicCritic]:
    """The module's networks by checkpoint prefix; each has weights, optimisers and statistics."""
    parts: dict[str, BonusModel | IntrinsicCritic] = {"model": explorer.bonus_model}
    if explorer.int_critic is not None:
        parts["int_value"] = explorer.int_critic
    return parts


def _optimisers(part: BonusModel | IntrinsicCritic) -> dict[str, torch.optim.Optimizer]:
    return {name: optim.optimizer for name, optim in part.optimisers().items()}


def _arrays(explorer: Explorer) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    numpy_state: dict[str, np.ndarray] = {}
    for prefix, part in _trained_parts(explorer).items():
        tensors.update({f"{prefix}.{k}": v for k, v in part.state_dict().items()})
        tensors.update(optimiser_tensors(_optimisers(part)))
        for name, stats in part.statistics().items():
            numpy_state.update({f"stats.{prefix}.{name}.{k}": v for k, v in stats.state().items()})
    numpy_state.update({f"scaler.{k}": v for k, v in explorer.scaler.state().items()})
    if explorer.store is not None:
        numpy_state.update({f"store.{k}": v for k, v in explorer.store.state().items()})
    tensors.update(array_tensors(numpy_state))
    tensors["torch_rng_state"] = explorer.torch_rng_state
    return tensors


def save_explorer(explorer: Explorer, folder: str | Path, steps: int | None = None) -> Path:
    """Write ``explorer`` to ``folder`` (created if needed); returns the folder.

    Args:
        steps: the agent's step count, recorded so that a run can tell whether model and module
            were saved together (:func:`read_checkpoint_steps`).
    """
    settings = {
        "format_version": FORMAT_VERSION,
        "exploration": to_dict(explorer.config),
        "observation_space": describe_space(explorer.observation_space),
        "action_space": describe_space(explorer.action_space),
        "n_envs": explorer.n_envs,
        "own_replay": explorer.store is not None,
        "counters": explorer.counters,
        "task_spoke": explorer.task_spoke,
        "task_reward_fences": explorer.task_reward_fences,
        "reference_task_rewards": explorer.reference_task_rewards,
        "finished_episodes_spoke": list(explorer.finished_episodes_spoke),
        "rng_state": explorer.rng.bit_generator.state,
        "steps": steps,
    }
    return write_checkpoint(folder, _arrays(explorer), settings)


def read_checkpoint_steps(folder: str | Path) -> int | None:
    """The agent's step count recorded with a module's checkpoint, the exploration module's or an
    online representation's training (None when it was saved without one).

    Raises:
        CheckpointError: the settings file is missing or not valid JSON.
    """
    steps = read_json(Path(folder) / SETTINGS_FILE).get("steps")
    return int(steps) if isinstance(steps, int) else None


def _restore(explorer: Explorer, tensors: dict[str, torch.Tensor], settings: dict[str, Any]) -> None:
    for prefix, part in _trained_parts(explorer).items():
        part.load_state_dict(
            {k.removeprefix(f"{prefix}."): v for k, v in tensors.items() if k.startswith(f"{prefix}.")}
        )
        load_optimisers(_optimisers(part), tensors)
        for name, stats in part.statistics().items():
            stats.load_state(prefixed_arrays(tensors, f"stats.{prefix}.{name}."))
    scaler_state = prefixed_arrays(tensors, "scaler.")
    if explorer.n_envs != settings["n_envs"]:  # per-env running returns cannot be mapped onto other envs; the scale can
        scaler_state["returns"] = explorer.scaler.returns
    explorer.scaler.load_state(scaler_state)
    if explorer.store is not None:
        explorer.store.load_state(prefixed_arrays(tensors, "store."))
    explorer.torch_rng_state = tensors["torch_rng_state"].clone()
    explorer.counters.update(settings.get("counters", {}))
    fences = settings.get("task_reward_fences")
    if fences is None and settings.get("first_task_reward") is not None:  # written before the fences: one reward
        fences = [settings["first_task_reward"]] * 2
    explorer.task_reward_fences = None if fences is None else (float(fences[0]), float(fences[1]))
    explorer.reference_task_rewards = list(settings.get("reference_task_rewards", []))
    explorer.finished_episodes_spoke.extend(settings.get("finished_episodes_spoke", []))
    if settings.get("task_spoke", False):  # after the scale's state, whose memory this ends
        explorer.hand_over()
    explorer.rng.bit_generator.state = settings["rng_state"]


def load_explorer(
    folder: str | Path,
    observation_space: spaces.Space,
    action_space: spaces.Space,
    n_envs: int | None = None,
    seed: int = 0,
) -> Explorer:
    """Rebuild an :class:`Explorer` from ``folder`` for an environment with the given spaces.

    Raises:
        CheckpointError: the folder lacks a file, the format is unknown, or a space differs.
    """
    settings_path = Path(folder) / SETTINGS_FILE
    settings = read_settings(folder, KIND, FORMAT_VERSION)
    check_spaces(folder, settings, observation_space=observation_space, action_space=action_space)
    try:
        config = from_dict(ExplorationConfig, settings["exploration"], f"{settings_path}: exploration")
        n_envs = n_envs or int(settings["n_envs"])
        explorer = Explorer(config, observation_space, action_space, n_envs, seed, settings.get("own_replay", True))
        _restore(explorer, read_tensors(folder), settings)
    except CheckpointError:
        raise
    except (ConfigError, KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{folder}: cannot restore the exploration module ({error})") from error
    return explorer
