"""The exploration baselines learn what they should on toy data."""

import numpy as np
import pytest
from gymnasium import spaces

from ilvm_rl.data.replay import TransitionBatch
from ilvm_rl.data.spaces import TransitionCodec
from ilvm_rl.exploration.icm import ICMBonus, ICMConfig

MOVES = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]], dtype=np.float32)


def grid_walk(rng: np.random.Generator, n: int) -> TransitionBatch:
    """Deterministic toy: a point on a 9×9 grid moved one cell by one of four actions."""
    obs = rng.integers(-3, 4, size=(n, 2)).astype(np.float32)
    actions = rng.integers(0, 4, size=(n, 1))
    next_obs = obs + MOVES[actions[:, 0]]
    flags = np.zeros(n, dtype=bool)
    return TransitionBatch(obs / 4, actions.astype(np.float32), next_obs / 4, flags, flags)


def test_icm_losses_fall_on_a_deterministic_toy(rng: np.random.Generator) -> None:
    space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    icm = ICMBonus(TransitionCodec(space, spaces.Discrete(4)), hidden_sizes=(32,), config=ICMConfig(feature_dim=8))
    first = icm.train_step(grid_walk(rng, 128))
    assert first is not None
    for _ in range(300):
        last = icm.train_step(grid_walk(rng, 128))
    assert last is not None
    # four equally likely actions: an untrained inverse model pays about log 4 nats
    assert first["icm_inverse"] == pytest.approx(np.log(4), abs=0.3)
    assert last["icm_inverse"] < 0.2 * first["icm_inverse"]
    assert last["icm_forward"] < 0.5 * first["icm_forward"]
