"""normalize_reward: the task's reward scale is kept beside checkpoints as JSON, not pickled."""

import json

import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize
from toy_envs import CounterEnv

from ilvm_rl.config import ConfigError
from ilvm_rl.run import REWARD_SCALE_FILE, load_reward_scale, save_reward_scale


def stepped_normalizer(steps: int) -> VecNormalize:
    env = VecNormalize(make_vec_env(CounterEnv, n_envs=2, seed=0), norm_obs=False, norm_reward=True)
    env.reset()
    for _ in range(steps):
        env.step(np.zeros(2, dtype=np.int64))
    return env


def test_reward_scale_round_trips_through_json(tmp_path) -> None:
    trained = stepped_normalizer(7)
    save_reward_scale(tmp_path, trained)
    fresh = stepped_normalizer(0)
    load_reward_scale(tmp_path, fresh)
    assert fresh.ret_rms.count == trained.ret_rms.count
    np.testing.assert_allclose([fresh.ret_rms.mean, fresh.ret_rms.var], [trained.ret_rms.mean, trained.ret_rms.var])
    np.testing.assert_array_equal(fresh.returns, trained.returns)
    assert fresh.normalize_reward(np.array([-1.0])) == trained.normalize_reward(np.array([-1.0]))


def test_a_malformed_reward_scale_is_named(tmp_path) -> None:
    (tmp_path / REWARD_SCALE_FILE).write_text(json.dumps({"mean": 0.0}))
    with pytest.raises(ConfigError, match=REWARD_SCALE_FILE):
        load_reward_scale(tmp_path, stepped_normalizer(0))
