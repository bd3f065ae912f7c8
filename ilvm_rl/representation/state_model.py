"""The state model whose posterior mean is the policy's representation, its training and its checkpoint.

Nothing here knows Stable-Baselines3: :mod:`ilvm_rl.representation.extractor` puts the model into a
policy, and :mod:`ilvm_rl.representation.pretrain` fits it before a run.

A checkpoint folder holds ``weights.safetensors`` (the model's weights and input scaling) and
``settings.json`` (format version, the representation settings, the observation space it was fitted
on), read without pickle. A trainer's checkpoint (:func:`save_trainer`), beside a run's ``model.zip``
that holds the model, is laid out the same way: its replay, the observations not yet in the input
scaling and Adam's state in safetensors, its replay sampler's random stream in JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ilvm_rl.checkpoint import (
    SETTINGS_FILE,
    CheckpointError,
    array_tensors,
    describe_space,
    load_optimisers,
    optimiser_tensors,
    prefixed_arrays,
    read_tensors,
    write_checkpoint,
)
from ilvm_rl.checkpoint import (
    read_settings as read_checkpoint_settings,
)
from ilvm_rl.config import ConfigError, from_dict, to_dict
from ilvm_rl.data.replay import TransitionBatch
from ilvm_rl.data.spaces import ObservationFlattener, TransitionCodec, bounded_values, fixed_scale
from ilvm_rl.data.statistics import RunningMeanStd
from ilvm_rl.model.ilvm import ILVM, ModelConfig
from ilvm_rl.model.optim import ModelOptimisers, average_steps

Mode = Literal["frozen", "finetune", "online"]
MODES: tuple[Mode, ...] = ("frozen", "finetune", "online")
FORMAT_VERSION = 1
KIND = "representation checkpoint (ilvm-rl pretrain --out)"
TRAINER_FORMAT_VERSION = 1
TRAINER_KIND = "checkpoint of an online state model's training (a run's representation_online/)"


@dataclass(frozen=True)
class RepresentationConfig:
    """Settings of the representation module.

    Attributes:
        mode: ``frozen`` (pretrained, never trained during RL), ``finetune`` (pretrained, then trained
            by the RL loss with the policy) or ``online`` (trained during RL by its own objective on
            its own replay as an auxiliary task, beside the RL loss that trains the encoder with the
            policy; no pretraining unless ``checkpoint`` names one).
        checkpoint: folder of a pretrained state model (``ilvm-rl pretrain --out``), relative to the
            current directory. Null: ``frozen`` and ``finetune`` runs pretrain their own into the run
            folder first; ``online`` starts from scratch.
        pretrain_steps: random-policy environment steps collected when a run pretrains its own model.
        fit_steps: gradient steps of pretraining.
        store_capacity: observations kept in the module's replay (pretraining and ``online``).
        batch_size: observations per gradient step.
        updates_per_rollout: gradient steps after each rollout in ``online`` mode.
        recent_fraction: share of each ``online`` batch drawn from the latest rollout.
        learning_rate: Adam step size of the module's own objective.
        model: the state model; its ``latent_dim`` is the width of the features.
    """

    mode: Mode = "finetune"
    checkpoint: str | None = None
    pretrain_steps: int = 20_000
    fit_steps: int = 1_000
    store_capacity: int = 20_000
    batch_size: int = 128
    updates_per_rollout: int = 4
    recent_fraction: float = 0.5
    learning_rate: float = 1e-3
    # a light KL keeps more of the image in the latent (docs/benchmarks/pixel-room.md, the KL pilot)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(latent_dim=16, hidden_sizes=(256,), kl_weight=0.1))

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode: unknown mode {self.mode!r}; accepted: {', '.join(MODES)}")
        for name in ("pretrain_steps", "store_capacity", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("fit_steps", "updates_per_rollout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.recent_fraction <= 1.0:
            raise ValueError(f"recent_fraction must lie in [0, 1], got {self.recent_fraction}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not {"elbo", "adversarial"} & set(self.model.objectives):
            raise ValueError(
                f"model.objectives must include 'elbo' or 'adversarial': the features are the posterior "
                f"mean of q(z|x), which only those objectives train; got {self.model.objectives}"
            )


class StateModel(nn.Module):
    """An unconditional ILVM ``p(s)`` of observations, read through their input scaling.

    Its input is a flat observation (:class:`ObservationFlattener`) in raw units: values with finite,
    narrow bounds (pixels included) are scaled to [-1, 1] by them, the others standardised by running
    statistics that :meth:`update_scale` folds in (frozen once the model is pretrained, unless it keeps
    training online).

    Args:
        observation_space: a 1-D Box, an image Box or a Dict of those.
        config: the ILVM's settings.
    """

    centre: torch.Tensor
    half_width: torch.Tensor

    def __init__(self, observation_space: spaces.Space, config: ModelConfig):
        super().__init__()
        self.flattener = ObservationFlattener(observation_space)
        flat = self.flattener.flat_space
        self.bounded = bounded_values(flat)
        centre, half_width = fixed_scale(flat)  # 0 and 1 where running statistics take over
        self.register_buffer("centre", torch.as_tensor(centre))
        self.register_buffer("half_width", torch.as_tensor(half_width))
        self.stats = RunningMeanStd((self.flattener.layout.dim,))
        # the running statistics also live in buffers, so that every state dict carries them (the
        # policy's in an SB3 model zip included) and a resumed run standardises as before
        dim = self.flattener.layout.dim
        self.register_buffer("stats_mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("stats_var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("stats_count", torch.zeros(1, dtype=torch.float64))
        self.register_load_state_dict_post_hook(lambda module, _: module.stats.load_state(module.statistics()))
        self.model = ILVM(0, self.flattener.layout.dim, config, self.flattener.layout)

    @property
    def features_dim(self) -> int:
        return self.model.config.latent_dim

    def update_scale(self, flat_obs: np.ndarray) -> None:
        """Fold observations ``(n, dim)`` into the standardisation of the values without fixed bounds."""
        if self.bounded.all():
            return
        self.stats.update(flat_obs)
        for key, value in self.stats.state().items():
            getattr(self, f"stats_{key}").copy_(torch.as_tensor(value).reshape(-1))
        free = torch.as_tensor(~self.bounded, device=self.centre.device)
        self.centre[free] = torch.as_tensor(self.stats.mean, dtype=torch.float32, device=self.centre.device)[free]
        self.half_width[free] = torch.as_tensor(self.stats.std, dtype=torch.float32, device=self.centre.device)[free]

    def statistics(self) -> dict[str, np.ndarray]:
        """The running input statistics as kept in the buffers (``mean``, ``var``, ``count``)."""
        return {key: getattr(self, f"stats_{key}").cpu().numpy() for key in ("mean", "var", "count")}

    def scaled(self, flat_obs: torch.Tensor) -> torch.Tensor:
        """Raw flat observations ``(B, dim)`` to the model's inputs ``(B, dim)``."""
        return (flat_obs.float() - self.centre) / self.half_width

    def features(self, flat_obs: torch.Tensor) -> torch.Tensor:
        """The representation: the posterior mean ``E[z | s]``, ``(B, latent_dim)``."""
        return self.model.encode(None, self.scaled(flat_obs))


class StateModelTrainer:
    """Fits a :class:`StateModel` to the observations of a replay by the model's own objective.

    Args:
        state_model: the model to train.
        config: replay size, batches, schedule and step size.
        codec: how the replay stores transitions (it keeps whole transitions, as the exploration
            module's does); its observations are laid out as the state model's.
        seed: seeds the replay sampling.
    """

    def __init__(self, state_model: StateModel, config: RepresentationConfig, codec: TransitionCodec, seed: int = 0):
        self.state_model = state_model
        self.config = config
        self.optims = ModelOptimisers(state_model.model, config.learning_rate)
        self.store = codec.store(config.store_capacity)
        self.rng = np.random.default_rng(seed)
        self.skipped = 0
        self.pending: list[np.ndarray] = []  # next observations ``(n, dim)`` not yet in the input scaling

    def observe(self, batch: TransitionBatch) -> None:
        """Add a step of transitions; their next observations are what the model learns. They join
        the input scaling only at the next :meth:`update`: in ``online`` mode the model is the
        policy's features extractor, whose input scale must not change while a rollout is collected
        (its values and log-probabilities are stored with the features of that scale)."""
        self.store.add(batch)
        if not self.state_model.bounded.all():  # else nothing to standardise (images)
            self.pending.append(batch.next_obs[batch.finite_rows()])

    def update(self, steps: int, recent: int = 0) -> dict[str, float]:
        """Fold the observations seen since the last call into the input scaling, then take ``steps``
        gradient steps on batches mixing the ``recent`` latest observations with the whole replay;
        returns the mean losses (``loss/...``) and the count of skipped steps."""
        if self.pending:
            self.state_model.update_scale(np.concatenate(self.pending))
            self.pending = []
        batches = (
            self.store.sample(self.config.batch_size, self.rng, recent, self.config.recent_fraction)
            for _ in range(steps)
        )
        metrics, skipped = average_steps(self._step(batch) for batch in batches)
        self.skipped += skipped
        metrics["skipped_updates"] = float(self.skipped)
        return metrics

    def optimisers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers by name, for checkpoints."""
        return {name: optim.optimizer for name, optim in self.optims.by_name().items()}

    def _step(self, batch: TransitionBatch) -> dict[str, float] | None:
        """One guarded gradient step on the finite next observations of ``batch``; None if skipped."""
        rows = batch.finite_rows()
        if not rows.any():
            return None
        next_obs = torch.as_tensor(batch.next_obs[rows], device=self.state_model.centre.device)
        loss = self.state_model.model.loss(None, self.state_model.scaled(next_obs))
        return self.optims.step(loss)


def save_state_model(
    state_model: StateModel, config: RepresentationConfig, folder: str | Path, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``state_model`` with the settings it was made with to ``folder`` (created if needed).

    Args:
        extra: more JSON-able facts to keep in the settings (how it was pretrained).
    """
    settings = {
        "format_version": FORMAT_VERSION,
        "representation": to_dict(config),
        "observation_space": describe_space(state_model.flattener.space),
        **(extra or {}),
    }
    return write_checkpoint(folder, state_model.state_dict(), settings)


def save_trainer(trainer: StateModelTrainer, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write what ``trainer`` needs to go on training as it would have, apart from the model itself
    (a run keeps that with the policy, in ``model.zip``), to ``folder`` (created if needed).

    Args:
        extra: more JSON-able facts to keep in the settings (a callback's own counts, the step count).
    """
    pending = trainer.pending or [trainer.store.arrays["next_obs"][:0]]
    arrays = {
        **{f"store.{key}": value for key, value in trainer.store.state().items()},
        "pending": np.concatenate(pending),
    }
    settings = {
        "format_version": TRAINER_FORMAT_VERSION,
        "skipped": trainer.skipped,
        "rng_state": trainer.rng.bit_generator.state,
        **(extra or {}),
    }
    return write_checkpoint(folder, {**optimiser_tensors(trainer.optimisers()), **array_tensors(arrays)}, settings)


def load_trainer(trainer: StateModelTrainer, folder: str | Path) -> dict[str, Any]:
    """Restore a checkpoint of :func:`save_trainer` into ``trainer`` (built for the same model and
    settings); returns its settings, ``extra`` included.

    Raises:
        CheckpointError: a file is missing, or the checkpoint does not fit the trainer (another
            format, observation space or model).
    """
    settings = read_checkpoint_settings(folder, TRAINER_KIND, TRAINER_FORMAT_VERSION)
    tensors = read_tensors(folder)
    try:
        trainer.store.load_state(prefixed_arrays(tensors, "store."))
        load_optimisers(trainer.optimisers(), tensors)
        pending = tensors["pending"].numpy()
        trainer.pending = [pending] if len(pending) else []
        trainer.skipped = int(settings["skipped"])
        trainer.rng.bit_generator.state = settings["rng_state"]
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{folder}: cannot restore the state model's training ({error})") from error
    return settings


def read_settings(folder: str | Path) -> tuple[RepresentationConfig, dict[str, Any]]:
    """The settings a state-model checkpoint was made with, and its whole settings file.

    Raises:
        CheckpointError: the folder lacks a file, or the settings are malformed or of another format.
    """
    settings_path = Path(folder) / SETTINGS_FILE
    settings = read_checkpoint_settings(folder, KIND, FORMAT_VERSION)
    try:
        config = from_dict(RepresentationConfig, settings["representation"], f"{settings_path}: representation")
    except (ConfigError, KeyError) as error:
        raise CheckpointError(f"{settings_path}: {error}") from error
    return config, settings


def load_state_model_weights(state_model: StateModel, folder: str | Path) -> None:
    """Load a checkpoint into ``state_model`` (built for the environment's observation space).

    Raises:
        CheckpointError: a file is missing, or the checkpoint was fitted on another observation space
            or with other model settings.
    """
    config, settings = read_settings(folder)
    expected = describe_space(state_model.flattener.space)
    if settings.get("observation_space") != expected:
        raise CheckpointError(
            f"{Path(folder) / SETTINGS_FILE}: the state model was pretrained on the observation space "
            f"{_short(settings.get('observation_space'))}, but the policy observes {_short(expected)}; "
            f"pretrain on the same environment (and observation wrappers)"
        )
    if config.model != state_model.model.config:
        raise CheckpointError(
            f"{Path(folder) / SETTINGS_FILE}: pretrained with model settings {to_dict(config.model)}, but the "
            f"recipe asks for {to_dict(state_model.model.config)}; pretrain with the same recipe"
        )
    tensors = read_tensors(folder)
    try:
        # checkpoints written before the statistics became buffers name them stats.mean, ...
        state_model.load_state_dict(
            {
                "stats_" + key.removeprefix("stats.") if key.startswith("stats.") else key: value
                for key, value in tensors.items()
            }
        )
    except (KeyError, RuntimeError) as error:
        raise CheckpointError(f"{folder}: cannot restore the state model ({error})") from error


def _short(description: Any) -> str:
    """A space description without its per-value bounds, which make it unreadably long for images."""
    if isinstance(description, dict):
        return str({k: _short(v) for k, v in description.items() if k not in ("low", "high")})
    return str(description)
