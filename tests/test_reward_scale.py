"""normalize_reward: the task's reward scale travels in checkpoint.json, not in a pickle."""

import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize
from toy_envs import CounterEnv

from ilvm_rl.run_state import restore_reward_scale, reward_scale_state


def stepped_normalizer(steps: int) -> VecNormalize:
    env = VecNormalize(make_vec_env(CounterEnv, n_envs=2, seed=0), norm_obs=False, norm_reward=True)
    env.reset()
    for _ in range(steps):
        env.step(np.zeros(2, dtype=np.int64))
    return env


def test_reward_scale_round_trips_through_json_values() -> None:
    trained = stepped_normalizer(7)
    fresh = stepped_normalizer(0)
    restore_reward_scale(fresh, reward_scale_state(trained))
    assert fresh.ret_rms.count == trained.ret_rms.count
    np.testing.assert_allclose([fresh.ret_rms.mean, fresh.ret_rms.var], [trained.ret_rms.mean, trained.ret_rms.var])
    np.testing.assert_array_equal(fresh.returns, trained.returns)
    assert fresh.normalize_reward(np.array([-1.0])) == trained.normalize_reward(np.array([-1.0]))
