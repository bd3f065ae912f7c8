"""Replay, running statistics and the bonus pipeline's guards against non-finite values."""

import numpy as np
import pytest
from gymnasium import spaces

from ilvm_rl import ExplorationConfig, Explorer, ModelConfig
from ilvm_rl.data.replay import TransitionBatch, TransitionStore
from ilvm_rl.data.statistics import RunningMeanStd
from ilvm_rl.exploration.streams import ReturnScaler

OBS_SPACE = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)


def batch_of(values: np.ndarray) -> TransitionBatch:
    n = len(values)
    obs = np.stack([values, values], axis=1).astype(np.float32)
    return TransitionBatch(obs, np.zeros((n, 1), np.float32), obs + 1, np.zeros(n, bool), np.zeros(n, bool))


def test_store_is_bounded_and_returns_the_latest_in_order(rng: np.random.Generator) -> None:
    store = TransitionStore(capacity=5, obs_dim=2, action_dim=1)
    for start in range(0, 12, 3):
        store.add(batch_of(np.arange(start, start + 3)))
    assert store.size == 5 and store.arrays["obs"].shape == (5, 2)
    np.testing.assert_array_equal(store.latest(4).obs[:, 0], [8, 9, 10, 11])
    sample = store.sample(200, rng, recent=2, recent_fraction=0.5)
    assert set(sample.obs[:100, 0]) == {10, 11}  # the recent share comes from the last 2 rows
    assert set(sample.obs[100:, 0]) <= {7, 8, 9, 10, 11}
    with pytest.raises(ValueError, match="holds 5"):
        store.latest(6)


def test_store_state_round_trip_keeps_order() -> None:
    store = TransitionStore(capacity=4, obs_dim=2, action_dim=1)
    store.add(batch_of(np.arange(6)))
    copy = TransitionStore(capacity=4, obs_dim=2, action_dim=1)
    copy.load_state(store.state())
    np.testing.assert_array_equal(copy.latest(4).obs, store.latest(4).obs)


def test_running_mean_std_matches_numpy_and_covers_a_window_with_memory(rng: np.random.Generator) -> None:
    data = rng.normal(3.0, 2.0, size=(1000, 2))
    stats = RunningMeanStd((2,))
    for chunk in np.split(data, 10):
        stats.update(chunk)
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-6)
    windowed = RunningMeanStd(memory=300)
    windowed.update(rng.normal(0, 1000.0, 1000))
    recent = rng.normal(5.0, 2.0, size=(3, 100))
    for chunk in recent:
        windowed.update(chunk)
    # the large early values are gone entirely once three later batches fill the memory
    assert windowed.count == 300
    np.testing.assert_allclose([windowed.mean, windowed.var], [recent.mean(), recent.var()], rtol=1e-9)
    restored = RunningMeanStd(memory=300)
    restored.load_state({k: np.array(v) for k, v in windowed.state().items()})
    restored.update(np.zeros(100))
    windowed.update(np.zeros(100))
    np.testing.assert_allclose([restored.mean, restored.var], [windowed.mean, windowed.var])


def test_return_scaler_keeps_the_sign_and_reaches_unit_scale(rng: np.random.Generator) -> None:
    scaler = ReturnScaler(n_envs=4, gamma=0.9)
    for _ in range(100):
        scaled = scaler.scale(rng.normal(0.0, 50.0, size=(16, 4)))
    assert 0.2 < scaled.std() < 2.0
    raw = np.array([[-5.0, 5.0, 0.0, 1.0]])
    np.testing.assert_array_equal(np.sign(scaler.scale(raw)), np.sign(raw))


def test_non_finite_observations_never_reach_the_rewards() -> None:
    config = ExplorationConfig(batch_size=8, updates_per_rollout=2, model=ModelConfig(hidden_sizes=(8,), n_samples=2))
    explorer = Explorer(config, OBS_SPACE, spaces.Discrete(2), n_envs=2, seed=0)
    for step in range(4):
        obs = np.zeros((2, 2), np.float32)
        next_obs = np.full((2, 2), 0.1 * step, np.float32)
        if step == 2:
            next_obs[1] = np.nan
        explorer.observe(obs, np.array([0, 1]), next_obs, np.zeros(2, bool), np.zeros(2, bool))
    advantages, metrics = explorer.rollout_advantages(progress=0.0, last_obs=np.zeros((2, 2), np.float32))
    assert advantages.shape == (4, 2) and np.all(np.isfinite(advantages))
    assert metrics["int_reward_raw_max"] >= 0.0 and np.isfinite(metrics["int_reward_mean"])
    update = explorer.update(recent=8)
    assert update["nonfinite_rewards"] == 1.0
    assert all(np.isfinite(p.detach().numpy()).all() for p in explorer.bonus_model.parameters())


def test_coefficient_decays_linearly() -> None:
    config = ExplorationConfig(int_coef=2.0, int_coef_final=0.0, int_coef_final_at=1.0)
    explorer = Explorer(config, OBS_SPACE, spaces.Discrete(2), n_envs=1)
    assert [explorer.coefficient(p) for p in (0.0, 0.5, 1.0, 2.0)] == [2.0, 1.0, 0.0, 0.0]


def test_coefficient_reaches_its_final_value_at_int_coef_final_at() -> None:
    config = ExplorationConfig(int_coef=2.0, int_coef_final=0.0, int_coef_final_at=0.5)
    explorer = Explorer(config, OBS_SPACE, spaces.Discrete(2), n_envs=1)
    assert [explorer.coefficient(p) for p in (0.0, 0.25, 0.5, 0.9)] == [2.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="int_coef_final_at"):
        ExplorationConfig(int_coef_final_at=0.0)


def test_segments_never_cross_an_episode_end(rng: np.random.Generator) -> None:
    """Two envs with episodes of different lengths; each observation encodes (env, episode, step)."""
    n_envs, lengths, steps = 2, (3, 5), 40
    store = TransitionStore(capacity=60, obs_dim=3, action_dim=1)
    for t in range(steps):
        obs, next_obs, ends = [], [], []
        for env, length in enumerate(lengths):
            episode, step = divmod(t, length)
            obs.append([env, episode, step])
            end = step == length - 1
            next_obs.append([env, episode, step + 1])  # the terminal observation at an episode end
            ends.append(end)
        batch = TransitionBatch(
            np.array(obs, np.float32),
            np.full((n_envs, 1), t, np.float32),
            np.array(next_obs, np.float32),
            np.array(ends),
            np.zeros(n_envs, bool),
        )
        store.add(batch)
    segments = store.sample_segments(500, horizon=3, stride=n_envs, rng=rng)
    # one env, one episode, consecutive steps: next_obs[k] is obs advanced by k + 1 steps
    expected = segments.obs[:, None, :] + np.array([[0, 0, 1], [0, 0, 2], [0, 0, 3]], np.float32)
    np.testing.assert_array_equal(segments.next_obs, expected)
    np.testing.assert_array_equal(np.diff(segments.actions[:, :, 0], axis=1), 1.0)
    assert set(segments.obs[:, 0]) == {0.0, 1.0}  # both envs (episodes of 3 steps fit a 3-step segment)
    assert np.all(segments.obs[segments.obs[:, 0] == 0, 2] == 0)  # env 0: only whole episodes fit
    with pytest.raises(ValueError, match="no segment of 6 steps"):
        store.sample_segments(1, horizon=6, stride=n_envs, rng=rng)


def test_state_change_of_uint8_images_does_not_wrap() -> None:
    bright, dark = np.full((1, 4), 255, np.uint8), np.zeros((1, 4), np.uint8)
    batch = TransitionBatch(bright, np.zeros((1, 1)), dark, np.zeros(1, bool), np.zeros(1, bool))
    np.testing.assert_array_equal(batch.state_change(), -255.0)
