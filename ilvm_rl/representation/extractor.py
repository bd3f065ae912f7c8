"""Stable-Baselines3 glue of the representation module: the state model as a features extractor, and the
callback that trains it online.

Usage::

    config = RepresentationConfig(mode="frozen")
    model = PPO("CnnPolicy", env, policy_kwargs=representation_policy_kwargs(config))
    load_pretrained(model.policy, "runs/pretrained")  # after the policy is built: ortho_init re-initialises
    model.learn(50_000, callback=RepresentationCallback(config))

Why the weights are loaded after the model is built: PPO and A2C (``ortho_init=True``, their default)
re-initialise every linear and convolutional layer of the features extractor when the policy is
built, so weights loaded earlier would be overwritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from ilvm_rl.data.spaces import TransitionCodec
from ilvm_rl.representation.state_model import (
    RepresentationConfig,
    StateModel,
    StateModelTrainer,
    load_state_model_weights,
    load_trainer,
    save_trainer,
)
from ilvm_rl.sb3.callback import step_transitions


class ILVMFeaturesExtractor(BaseFeaturesExtractor):
    """Maps observations to the posterior mean ``E[z | s]`` of an ILVM state model.

    ``features_dim`` is the model's ``latent_dim``. In ``frozen`` mode the features are computed without
    gradient and the model's weights do not require one, so the RL loss never changes them. In
    ``finetune`` and ``online`` mode the RL loss trains the posterior's CNN and MLP with the policy;
    ``online`` adds the model's own objective as an auxiliary task (:class:`RepresentationCallback`),
    which also trains the prior and decoder.

    Its input is the policy's input: observations after every wrapper, ``VecNormalize`` included
    (normalised ones under ``norm_obs=True``). A pretrained model must have been fitted on the same
    (see :mod:`ilvm_rl.representation.pretrain`); the ``online`` mode learns from them as they come.

    Args:
        observation_space: the policy's observation space: a 1-D Box, an image Box or a Dict of those.
        config: the representation settings (mode and model).
        normalize_images: whether the policy divides uint8 images by 255 before the extractor sees
            them (SB3's ``normalize_images``, on by default); the model scales raw pixels by their
            bounds, so that division is undone.
    """

    input_scale: torch.Tensor

    def __init__(
        self,
        observation_space: spaces.Space,
        config: RepresentationConfig | None = None,
        normalize_images: bool = True,
    ):
        config = config or RepresentationConfig()
        super().__init__(observation_space, features_dim=config.model.latent_dim)
        self.config = config
        self.state_model = StateModel(observation_space, config.model)
        if config.mode == "frozen":
            self.state_model.requires_grad_(False)
        parts = observation_space.spaces.values() if isinstance(observation_space, spaces.Dict) else [observation_space]
        undo = [
            np.full(part.size, 255.0 if normalize_images and is_image_space(space) else 1.0)
            for part, space in zip(self.state_model.flattener.layout.parts, parts, strict=True)
        ]
        self.register_buffer("input_scale", torch.as_tensor(np.concatenate(undo), dtype=torch.float32))

    def forward(self, observations: Any) -> torch.Tensor:
        flat = self.state_model.flattener.flatten_tensor(observations) * self.input_scale
        if self.config.mode == "frozen":
            with torch.no_grad():
                return self.state_model.features(flat)
        return self.state_model.features(flat)


def representation_policy_kwargs(
    config: RepresentationConfig, policy_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``policy_kwargs`` that put an :class:`ILVMFeaturesExtractor` into the policy.

    Raises:
        ValueError: ``policy_kwargs`` already names another features extractor.
    """
    policy_kwargs = dict(policy_kwargs or {})
    if "features_extractor_class" in policy_kwargs:
        raise ValueError(
            "policy_kwargs.features_extractor_class is set, but the representation module supplies the "
            "features extractor; remove one of them"
        )
    policy_kwargs["features_extractor_class"] = ILVMFeaturesExtractor
    policy_kwargs["features_extractor_kwargs"] = {
        "config": config,
        "normalize_images": policy_kwargs.get("normalize_images", True),
    }
    return policy_kwargs


def extractors(policy: BasePolicy) -> list[ILVMFeaturesExtractor]:
    """The ILVM features extractors of a policy (two when actor and critic do not share one)."""
    # modules() yields a module once however many attributes hold it (a shared extractor)
    found = [module for module in policy.modules() if isinstance(module, ILVMFeaturesExtractor)]
    if not found:
        raise ValueError("the policy has no ILVMFeaturesExtractor; build it with representation_policy_kwargs(config)")
    return found


def trained_extractors(policy: BasePolicy) -> list[ILVMFeaturesExtractor]:
    """The ILVM features extractors that the agent's loss trains: a target network's (DQN's
    ``q_net_target``, SAC's and TD3's ``*_target``) only copies them at the agent's pace, so it is left out."""
    in_targets = {
        id(module) for name, child in policy.named_children() if name.endswith("_target") for module in child.modules()
    }
    return [extractor for extractor in extractors(policy) if id(extractor) not in in_targets]


def load_pretrained(policy: BasePolicy, checkpoint: str | Path) -> None:
    """Load a pretrained state model into every ILVM features extractor of a built policy.

    Raises:
        CheckpointError: the checkpoint is missing a file, or was fitted on another observation space
            or with other model settings.
    """
    for extractor in extractors(policy):
        load_state_model_weights(extractor.state_model, checkpoint)


class RepresentationCallback(BaseCallback):
    """Trains the policy's ILVM state model online by its own objective on its own replay, an auxiliary
    task beside the RL loss (``online`` mode): every step's observations (what the policy read, so
    normalised ones under ``VecNormalize``) go into the replay; at the start of each rollout (after the
    algorithm's update, before new data is collected) the input scaling takes in the observations of
    the last rollout and the model takes ``updates_per_rollout`` gradient steps with its own
    optimiser. Neither weights nor input scale change while a rollout is collected, so its stored
    values and log-probabilities are those of the features the policy then trains on. Losses are
    logged under ``ilvm/repr/``.

    Off-policy agents (DQN, SAC, TD3) collect ``train_freq`` steps per rollout, so the model takes
    ``updates_per_rollout`` steps after each such collection (set it with the agent's cadence in mind);
    it trains the extractor of the online network, which the target network copies at the agent's
    pace. Its replay holds observations only, ``store_capacity`` of them, beside the agent's buffer.

    The model's weights and input scaling belong to the policy (SB3's ``model.zip`` keeps them);
    :meth:`save` keeps the rest of its training (replay, Adam's state, random stream), which
    ``checkpoint`` restores once the policy's weights are loaded.

    Args:
        config: the representation settings.
        seed: seeds the replay sampling.
        checkpoint: a folder written by :meth:`save` to go on from (a resumed run's).
    """

    def __init__(
        self, config: RepresentationConfig, seed: int = 0, checkpoint: str | Path | None = None, verbose: int = 0
    ):
        super().__init__(verbose)
        self.config = config
        self.seed = seed
        self.checkpoint = checkpoint
        self.trainer: StateModelTrainer | None = None
        self.recent = 0

    def _init_callback(self) -> None:
        if not isinstance(self.model, (OnPolicyAlgorithm, OffPolicyAlgorithm)):
            raise TypeError(
                f"RepresentationCallback supports SB3's on-policy (PPO, A2C) and off-policy (DQN, SAC, TD3) "
                f"algorithms, got {type(self.model).__name__}"
            )
        found = trained_extractors(self.model.policy)
        if len(found) != 1:
            raise ValueError(
                "online representation training needs one features extractor shared by actor and critic; "
                "set policy_kwargs.share_features_extractor to true"
            )
        env = self.training_env
        state_model = found[0].state_model
        self.codec = TransitionCodec(state_model.flattener.space, env.action_space)
        self.trainer = StateModelTrainer(state_model, self.config, self.codec, self.seed)
        if self.checkpoint is not None:
            self.recent = int(load_trainer(self.trainer, self.checkpoint).get("recent", 0))

    def _on_step(self) -> bool:
        assert self.trainer is not None
        self.trainer.observe(self.codec.batch(**step_transitions(self)))
        self.recent += self.training_env.num_envs
        return True

    def _on_rollout_start(self) -> None:
        assert self.trainer is not None
        if not self.recent:  # nothing collected yet
            return
        metrics = self.trainer.update(self.config.updates_per_rollout, recent=self.recent)
        self.recent = 0
        for name, value in metrics.items():
            self.logger.record(f"ilvm/repr/{name}", value)

    def save(self, folder: str | Path, steps: int | None = None) -> Path:
        """Write the training's checkpoint to ``folder``; ``steps``, the agent's step count, is
        recorded with it so that a run can tell whether it was saved with the model."""
        if self.trainer is None:
            raise ValueError("nothing to save: the callback has not been initialised by learn()")
        return save_trainer(self.trainer, folder, {"recent": self.recent, "steps": steps})
