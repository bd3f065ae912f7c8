"""The bonus reaches SB3's returns exactly like the extrinsic reward does."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from toy_envs import CounterEnv

from ilvm_rl import ExplorationCallback, ExplorationConfig, ModelConfig
from ilvm_rl.sb3.callback import add_bonus_and_recompute

TINY_MODEL = ModelConfig(objectives=("energy", "elbo"), latent_dim=2, hidden_sizes=(16,), n_samples=4)
TINY = ExplorationConfig(
    score="excess_error", store_capacity=1000, batch_size=32, updates_per_rollout=1, model=TINY_MODEL
)


def make_buffer(rewards, values, episode_starts, gamma=0.9, gae_lambda=0.8) -> RolloutBuffer:
    n_steps = len(rewards)
    buffer = RolloutBuffer(n_steps, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), gamma=gamma, gae_lambda=gae_lambda)
    for reward, value, start in zip(rewards, values, episode_starts, strict=True):
        buffer.add(
            np.zeros((1, 1)),
            np.zeros((1, 1)),
            np.array([reward]),
            np.array([start]),
            torch.tensor([value]),
            torch.zeros(1),
        )
    return buffer


def test_gae_with_bonus_matches_a_hand_computed_example() -> None:
    gamma, lam = 0.9, 0.8
    buffer = make_buffer([1.0, 0.0, 2.0], [0.5, 1.0, 0.0], [1.0, 0.0, 0.0], gamma, lam)
    bonus = np.array([[0.5], [1.0], [0.0]], dtype=np.float32)
    add_bonus_and_recompute(buffer, bonus, torch.tensor([3.0]), np.array([False]))
    # rewards with bonus: 1.5, 1.0, 2.0; last value 3.0 bootstraps the final step
    delta2 = 2.0 + gamma * 3.0 - 0.0
    delta1 = 1.0 + gamma * 0.0 - 1.0
    delta0 = 1.5 + gamma * 1.0 - 0.5
    adv2 = delta2
    adv1 = delta1 + gamma * lam * adv2
    adv0 = delta0 + gamma * lam * adv1
    np.testing.assert_allclose(buffer.advantages[:, 0], [adv0, adv1, adv2], rtol=1e-5)
    np.testing.assert_allclose(buffer.returns[:, 0], [adv0 + 0.5, adv1 + 1.0, adv2], rtol=1e-5)


def test_bonus_at_t_changes_the_advantage_at_t_minus_1_but_not_across_an_episode_start() -> None:
    values, starts = [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]
    plain = make_buffer([0.0] * 4, values, starts)
    add_bonus_and_recompute(plain, np.zeros((4, 1), dtype=np.float32), torch.zeros(1), np.array([False]))
    bonused = make_buffer([0.0] * 4, values, starts)
    bonus = np.zeros((4, 1), dtype=np.float32)
    bonus[2] = 1.0
    add_bonus_and_recompute(bonused, bonus, torch.zeros(1), np.array([False]))
    change = bonused.advantages[:, 0] - plain.advantages[:, 0]
    np.testing.assert_allclose(change, [0.9 * 0.8 * 0.9 * 0.8, 0.9 * 0.8, 1.0, 0.0], rtol=1e-5)


class RewardSpy(BaseCallback):
    """Copies the rollout buffer's rewards at rollout end (placed before and after the bonus)."""

    def __init__(self):
        super().__init__()
        self.rewards: list[np.ndarray] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.rewards.append(self.locals["rollout_buffer"].rewards.copy())


def test_terminal_observation_is_scored_and_timeouts_still_bootstrap() -> None:
    # episodes of 5 steps cut at 3 by a time limit: every episode end is a truncation
    env = make_vec_env(lambda: TimeLimit(CounterEnv(length=5), max_episode_steps=3), n_envs=2, seed=0)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=6,
        batch_size=12,
        n_epochs=1,
        gamma=0.9,
        seed=0,
        policy_kwargs={"net_arch": [8]},
        device="cpu",
    )
    before, after = RewardSpy(), RewardSpy()
    exploration = ExplorationCallback(TINY, seed=0)
    scored = []

    class ValueCheck(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            rollout = exploration.explorer.store.latest(12)
            scored.append(rollout)
            ends = rollout.truncated.reshape(6, 2)
            terminal = torch.as_tensor(rollout.next_obs.reshape(6, 2, -1)[ends])
            with torch.no_grad():  # the policy has not changed since the rollout was collected
                values = self.model.policy.predict_values(terminal).numpy()[:, 0]
            np.testing.assert_allclose(before.rewards[-1][ends], -1.0 + 0.9 * values, rtol=1e-5)

    model.learn(24, callback=CallbackList([before, ValueCheck(), exploration, after]))
    for rollout in scored:
        ends = rollout.truncated
        assert ends.any() and not rollout.terminated.any()
        # the store holds the terminal observation (count 3), not the reset one (count 0)
        np.testing.assert_array_equal(rollout.next_obs[ends, 0], 3.0)
        np.testing.assert_array_equal(rollout.next_obs[~ends, 0], rollout.obs[~ends, 0] + 1)
    for plain, with_bonus in zip(before.rewards, after.rewards, strict=True):
        assert np.all(np.isfinite(with_bonus)) and not np.allclose(plain, with_bonus)


@pytest.mark.parametrize("algo", [PPO, A2C])
@pytest.mark.parametrize(
    "action_space",
    [spaces.Discrete(3), spaces.MultiDiscrete([2, 3]), spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)],
    ids=["discrete", "multidiscrete", "box"],
)
@pytest.mark.parametrize(
    "method, score",
    [
        ("ilvm", "excess_error"),
        ("ilvm", "novelty"),
        ("ilvm", "latent_surprise"),
        ("ilvm", "disagreement"),
        ("rnd", "novelty"),
        ("icm", "novelty"),
    ],
)
def test_algorithms_and_action_spaces_train_with_the_bonus(algo, action_space, method, score) -> None:
    env = make_vec_env(lambda: CounterEnv(length=4, action_space=action_space), n_envs=2, seed=0)
    model = algo("MlpPolicy", env, n_steps=8, seed=0, policy_kwargs={"net_arch": [8]}, device="cpu")
    config = ExplorationConfig(
        method=method, score=score, store_capacity=100, batch_size=16, updates_per_rollout=1, model=TINY_MODEL
    )
    callback = ExplorationCallback(config, seed=0)
    model.learn(48, callback=callback)
    assert callback.explorer.store.size == 48
    assert np.all(np.isfinite(model.rollout_buffer.rewards))


def test_off_policy_algorithms_are_refused_with_a_clear_error() -> None:
    from stable_baselines3 import DQN

    model = DQN("MlpPolicy", make_vec_env(CounterEnv, n_envs=1), learning_starts=0, device="cpu")
    with pytest.raises(TypeError, match="on-policy"):
        model.learn(10, callback=ExplorationCallback(TINY))
