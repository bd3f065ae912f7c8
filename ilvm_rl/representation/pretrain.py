"""Pretraining: collect replay with a random (or given) policy and fit the state model to it.

What the model is fitted on: the observations the policy will read in training, because the model
becomes the policy's features extractor and sees exactly the policy's input. The environment is
vectorised and wrapped the way SB3 wraps an agent's (channel-last images moved channel-first) after
the same per-env wrappers as the agent's (``wrapper_class``: a recipe's ``normalize_obs``), so the
checkpoint's observation space and values are the ones the policy observes.

Under ``VecNormalize(norm_obs=True)`` the policy reads observations normalised by statistics that
move during training; this function does not apply ``VecNormalize``, so a model pretrained here would
be fitted on raw values the policy never sees. Under ``VecNormalize`` use the ``online`` mode, which
fits the model on the normalised observations the policy reads as it trains, or a fixed scale that
both see (a recipe's ``normalize_obs: bounds``) instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env

from ilvm_rl.data.spaces import TransitionCodec
from ilvm_rl.representation.state_model import (
    RepresentationConfig,
    StateModel,
    StateModelTrainer,
    save_state_model,
)
from ilvm_rl.sb3.callback import real_next_obs

FINAL_STEPS = 100
"""Gradient steps at the end of fitting whose mean losses are reported."""

Policy = Callable[[Any], np.ndarray]
"""Observations of every env (as the vec env gives them) to actions ``(n_envs, ...)``."""


def pretrain(
    env_id: str,
    config: RepresentationConfig,
    out: str | Path,
    steps: int | None = None,
    seed: int = 0,
    n_envs: int = 8,
    policy: Policy | None = None,
    wrapper_class: Callable[[gym.Env], gym.Env] | None = None,
) -> dict[str, Any]:
    """Fit a state model on replay of ``env_id`` and write it to ``out`` (a checkpoint folder).

    Args:
        env_id: a registered Gymnasium id.
        config: the representation settings (model, batches, step size, ``fit_steps``).
        out: the checkpoint folder to write.
        steps: environment steps to collect (all envs together); None takes ``config.pretrain_steps``.
        seed: seeds the environments, the random actions, the model and the batches.
        n_envs: parallel environments.
        policy: chooses the actions; None acts uniformly at random.
        wrapper_class: a per-env wrapper the agent will also see (e.g. observation rescaling).

    Returns:
        What was done: steps, gradient steps, the mean losses of the last 100 gradient steps and the
        time taken.
    """
    steps = config.pretrain_steps if steps is None else steps
    if steps < 1:
        raise ValueError(f"pretraining needs at least one environment step, got {steps}")
    start = time.perf_counter()
    venv = BaseAlgorithm._wrap_env(make_vec_env(env_id, n_envs=n_envs, seed=seed, wrapper_class=wrapper_class))
    venv.action_space.seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        state_model = StateModel(venv.observation_space, config.model)
    codec = TransitionCodec(venv.observation_space, venv.action_space)
    trainer = StateModelTrainer(state_model, config, codec, seed)
    obs = venv.reset()
    assert not isinstance(obs, tuple)
    for _ in range(-(-steps // n_envs)):
        actions = policy(obs) if policy else np.array([venv.action_space.sample() for _ in range(n_envs)])
        new_obs, _, dones, infos = venv.step(actions)
        assert not isinstance(new_obs, tuple)  # the state model refuses Tuple spaces when it is built
        truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos])
        next_obs = real_next_obs(new_obs, dones, infos)
        trainer.observe(codec.batch(obs, actions, next_obs, dones & ~truncated, dones & truncated))
        obs = new_obs
    venv.close()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trainer.update(config.fit_steps - min(FINAL_STEPS, config.fit_steps))
        metrics = trainer.update(min(FINAL_STEPS, config.fit_steps))
    summary = {
        "env_id": env_id,
        "steps": -(-steps // n_envs) * n_envs,
        "fit_steps": config.fit_steps,
        "seed": seed,
        "metrics": metrics,
        "time_s": time.perf_counter() - start,
    }
    save_state_model(state_model, config, out, extra={"pretraining": summary})
    return summary
