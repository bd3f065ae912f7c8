"""Off-policy agents: the bonus reaches each sampled batch as designed, and the agent's own stream stays SB3's."""

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from safetensors.torch import load_file, save_file
from stable_baselines3 import DQN, PPO, SAC, TD3, HerReplayBuffer
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from toy_envs import CounterEnv, ImageEnv

from ilvm_rl import ExplorationCallback, ExplorationConfig, ModelConfig
from ilvm_rl.checkpoint import CheckpointError
from ilvm_rl.config import ConfigError
from ilvm_rl.data.replay import TransitionBatch
from ilvm_rl.exploration import RNDConfig
from ilvm_rl.exploration.explorer import Explorer
from ilvm_rl.sb3 import replay
from ilvm_rl.sb3.replay import (
    ExplorationDictReplayBuffer,
    ExplorationReplayBuffer,
    ReplayExplorationCallback,
    exploration_buffer,
    load_replay,
    restore_module,
    save_replay,
)

TINY_MODEL = ModelConfig(objectives=("elbo",), latent_dim=2, hidden_sizes=(16,), n_samples=4)
TINY = ExplorationConfig(bonus=RNDConfig(), int_coef_final=None, model=TINY_MODEL)  # β held, as dqn_ilvm holds it


def two_envs() -> DummyVecEnv:
    """Env 0 terminates every 2 steps; env 1 is cut by a time limit every 3 steps (CounterEnv's
    observation is the step count, 0 after a reset; its reward is −1 at every step)."""
    return DummyVecEnv([lambda: CounterEnv(length=2), lambda: TimeLimit(CounterEnv(length=10), max_episode_steps=3)])


def dqn(env, config: ExplorationConfig = TINY, **kwargs) -> DQN:
    settings = {"learning_starts": 8, "batch_size": 16, "train_freq": 4, "gradient_steps": 2, **kwargs}
    return DQN(
        "MlpPolicy",
        env,
        replay_buffer_class=ExplorationReplayBuffer,
        replay_buffer_kwargs={"config": config},
        policy_kwargs={"net_arch": [8]},
        seed=0,
        device="cpu",
        **settings,
    )


class SampleSpy:
    """Wraps a buffer's bonus so that each sample leaves the rows it scored and the batch the model read."""

    def __init__(self, buffer: ExplorationReplayBuffer):
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []
        self.trained: list[TransitionBatch] = []
        original_bonus, original_train = buffer.bonus.sample_bonus, buffer.bonus.explorer.bonus_model.train_step

        def sample_bonus(rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
            self.calls.append((rows.copy(), envs.copy()))
            return original_bonus(rows, envs)

        def train_step(batch: TransitionBatch):
            self.trained.append(batch)
            return original_train(batch)

        buffer.bonus.sample_bonus = sample_bonus
        buffer.bonus.explorer.bonus_model.train_step = train_step


@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "vecnormalize"])
def test_sampled_rewards_are_the_stored_reward_plus_the_bonus_of_the_current_model(normalize: bool) -> None:
    env = VecNormalize(two_envs(), norm_obs=True, norm_reward=True) if normalize else two_envs()
    model = dqn(env, dataclasses.replace(TINY, int_coef=0.5))
    spy = SampleSpy(model.replay_buffer)
    model.learn(64, callback=ReplayExplorationCallback())
    buffer, bonus = model.replay_buffer, model.replay_buffer.bonus
    vec_normalize = env if normalize else None
    buffer.sample(8, env=vec_normalize)  # scores what was added since the agent last trained
    frozen = copy.deepcopy(bonus.explorer.bonus_model)  # the model as it is when the next batch is sampled
    std = float(bonus.explorer.scaler.stats.std)
    samples = buffer.sample(64, env=vec_normalize)
    rows, envs = spy.calls[-1]
    # the bonus was computed for the very rows SB3 sampled, on their stored (original) observations
    stored_obs = buffer.observations[rows, envs]
    expected_obs = env.normalize_obs(stored_obs) if normalize else stored_obs
    np.testing.assert_allclose(samples.observations.numpy(), expected_obs, rtol=1e-6)
    transitions = bonus.transitions(rows, envs)
    np.testing.assert_array_equal(transitions.obs, stored_obs)
    stored_rewards = buffer.rewards[rows, envs].reshape(-1, 1)
    task = env.normalize_reward(stored_rewards) if normalize else stored_rewards
    scores = frozen.score(transitions).reshape(-1, 1)
    centre = float(scores.mean())  # the batch's own mean, by the same model
    expected = task + 0.5 * (scores - centre) / std
    np.testing.assert_allclose(samples.rewards.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert transitions.terminated.any() and transitions.truncated.any() and centre > 0
    # the module only ever trained on original observations: whole step counts and the constant 1
    assert len(spy.trained) > 2
    for batch in spy.trained:
        for obs in (batch.obs, batch.next_obs):
            np.testing.assert_array_equal(obs[:, 1], 1.0)
            np.testing.assert_array_equal(obs[:, 0], np.round(obs[:, 0]))


def test_a_bonus_paid_at_every_step_pays_nothing_for_staying_alive() -> None:
    """The bonus is centred on the sampled batch's mean: the same bonus at every step adds nothing to
    any sampled reward, so ending an episode forfeits nothing."""
    model = dqn(two_envs(), dataclasses.replace(TINY, int_coef=2.0), gradient_steps=1)
    bonus = model.replay_buffer.bonus
    bonus.explorer.bonus_model.score = lambda batch: np.full(len(batch), 3.0, dtype=np.float32)
    model.learn(40, callback=ReplayExplorationCallback())
    rows, envs = np.repeat(np.arange(20), 2), np.tile([0, 1], 20)
    assert bonus.transitions(rows, envs).terminated.any()
    np.testing.assert_array_equal(bonus.sample_bonus(rows, envs), 0.0)


def test_a_bonus_the_model_has_lowered_since_arrival_is_no_penalty_for_staying_alive() -> None:
    """The centre is the current model's: scores that were higher when the transitions arrived (the
    model has trained since) do not turn the replayed bonus into a per-step penalty."""
    model = dqn(two_envs(), dataclasses.replace(TINY, int_coef=2.0), gradient_steps=1)
    bonus = model.replay_buffer.bonus
    bonus.explorer.bonus_model.score = lambda batch: np.full(len(batch), 3.0, dtype=np.float32)
    model.learn(40, callback=ReplayExplorationCallback())
    bonus.explorer.bonus_model.score = lambda batch: np.full(len(batch), 1.0, dtype=np.float32)
    bonus.pop_metrics()  # what the batches sampled while learning recorded
    rows, envs = np.repeat(np.arange(20), 2), np.tile([0, 1], 20)
    np.testing.assert_array_equal(bonus.sample_bonus(rows, envs), 0.0)
    assert bonus.pop_metrics()["int_reward_raw_centre"] == pytest.approx(1.0)


@pytest.mark.parametrize("chunk", [4096, 3])
def test_arriving_transitions_are_scored_once_in_time_order(chunk: int, monkeypatch) -> None:
    """Every transition added is scored once (the scale's statistics count each one), and the scale's
    discounted return runs through each env's transitions in order, however many are scored at once."""
    monkeypatch.setattr(replay, "SCORE_CHUNK", chunk)
    model = dqn(two_envs(), learning_starts=12)
    bonus = model.replay_buffer.bonus
    bonus.explorer.bonus_model.score = lambda batch: batch.next_obs[:, 0].astype(np.float32)
    model.learn(40, callback=ReplayExplorationCallback())
    model.replay_buffer.sample(4)  # scores the steps added since the agent last trained
    stored = model.replay_buffer.next_observations[:20, :, 0]  # step counts, terminal ones at episode ends
    assert bonus.explorer.scaler.stats.count == stored.size
    returns = np.zeros(2)
    for step in stored:
        returns = 0.99 * returns + step
    np.testing.assert_allclose(bonus.explorer.scaler.returns, returns, rtol=1e-6)


def test_a_bonus_with_no_weight_leaves_the_agent_unchanged() -> None:
    """The module draws from random streams of its own and lets SB3 draw the rows it would have drawn:
    with β = 0 DQN learns exactly what it learns with SB3's own buffer."""
    trained = []
    for buffer_class in (ReplayBuffer, ExplorationReplayBuffer):
        kwargs = {"config": dataclasses.replace(TINY, int_coef=0.0)} if buffer_class is ExplorationReplayBuffer else {}
        model = DQN(
            "MlpPolicy",
            two_envs(),
            learning_starts=8,
            batch_size=16,
            train_freq=4,
            replay_buffer_class=buffer_class,
            replay_buffer_kwargs=kwargs,
            policy_kwargs={"net_arch": [8]},
            seed=0,
            device="cpu",
        )
        callback = ReplayExplorationCallback() if buffer_class is ExplorationReplayBuffer else None
        model.learn(96, callback=callback)
        trained.append(torch.cat([p.detach().flatten() for p in model.policy.parameters()]))
    assert torch.equal(trained[0], trained[1])


def test_after_beta_reaches_zero_the_module_stops_and_the_agent_trains_as_it_would_have(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = dataclasses.replace(TINY, int_coef=1.0, int_coef_final=0.0, int_coef_final_at=0.5)

    def train(keep_scoring: bool) -> tuple[DQN, list[float], list[float]]:
        """The agent, and the progress of the run at each scored batch and at each model step."""
        if keep_scoring:  # the module as it was: it scores and trains to the end though β is 0
            monkeypatch.setattr(Explorer, "retired", lambda self, progress: False)
        model = dqn(two_envs(), config, learning_starts=0)
        bonus = model.replay_buffer.bonus
        scored: list[float] = []
        stepped: list[float] = []
        finite_scores, train_on = bonus.explorer.finite_scores, bonus.explorer.train_on
        bonus.explorer.finite_scores = lambda batch: scored.append(bonus.progress) or finite_scores(batch)
        bonus.explorer.train_on = lambda batches: stepped.append(bonus.progress) or train_on(batches)
        model.learn(64, callback=ReplayExplorationCallback())
        monkeypatch.undo()
        return model, scored, stepped

    retired_model, retired_scored, retired_stepped = train(keep_scoring=False)
    scoring_model, scoring_scored, scoring_stepped = train(keep_scoring=True)
    for ours, theirs in zip(retired_model.policy.parameters(), scoring_model.policy.parameters(), strict=True):
        assert torch.equal(ours, theirs)
    # DQN samples 2 batches after every 8 steps: at 8, 16, ... 64 of 64 steps; β is 0 from 32 on
    assert scoring_stepped == pytest.approx(np.repeat(np.arange(8, 72, 8) / 64, 2).tolist())
    assert retired_stepped == scoring_stepped[:6] and retired_scored == scoring_scored[: len(retired_scored)]
    assert max(retired_scored) < 0.5 <= max(scoring_scored)


@pytest.mark.parametrize("algo", [SAC, TD3])
def test_continuous_agents_train_with_the_bonus_and_the_module_reads_actions_in_env_units(algo) -> None:
    action_space = spaces.Box(-2.0, 2.0, (1,), dtype=np.float32)
    env = make_vec_env(lambda: CounterEnv(length=4, action_space=action_space), n_envs=2, seed=0)
    model = algo(
        "MlpPolicy",
        env,
        learning_starts=8,
        batch_size=16,
        train_freq=4,
        gradient_steps=1,
        replay_buffer_class=ExplorationReplayBuffer,
        replay_buffer_kwargs={
            "config": {"bonus": "ilvm", "score": "excess_error", "model": {"latent_dim": 2, "hidden_sizes": [16]}}
        },
        policy_kwargs={"net_arch": [8]},
        seed=0,
        device="cpu",
    )
    spy = SampleSpy(model.replay_buffer)
    model.learn(48, callback=ReplayExplorationCallback())
    buffer = model.replay_buffer
    rows, envs = spy.calls[-1]
    stored = buffer.actions[rows, envs]
    assert np.all(np.abs(stored) <= 1.0) and np.abs(stored).max() > 0.5  # SB3 keeps them rescaled to [-1, 1]
    np.testing.assert_allclose(buffer.bonus.transitions(rows, envs).actions, 2.0 * stored, rtol=1e-6)
    assert buffer.bonus.explorer.counters["nonfinite_rewards"] == 0
    assert np.isfinite(buffer.sample(16).rewards.numpy()).all()


class FlatParts(BaseFeaturesExtractor):
    """The parts of a Dict observation laid end to end (SB3's CNN needs larger images than the toy's)."""

    def __init__(self, observation_space: spaces.Dict):
        super().__init__(observation_space, features_dim=spaces.flatdim(observation_space))

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([part.flatten(1).float() for part in observations.values()], dim=1)


def test_dict_observations_of_images_are_read_and_stored_as_uint8() -> None:
    env = make_vec_env(lambda: ImageEnv(dict_obs=True), n_envs=2, seed=0)
    model = DQN(
        "MultiInputPolicy",
        env,
        learning_starts=8,
        batch_size=8,
        train_freq=4,
        replay_buffer_class=ExplorationDictReplayBuffer,
        replay_buffer_kwargs={"config": TINY},
        policy_kwargs={"net_arch": [8], "features_extractor_class": FlatParts},
        buffer_size=200,
        seed=0,
        device="cpu",
    )
    model.learn(32, callback=ReplayExplorationCallback())
    buffer = model.replay_buffer
    assert buffer.observations["image"].dtype == np.uint8
    batch = buffer.bonus.transitions(np.arange(4), np.zeros(4, dtype=np.int64))
    assert batch.obs.dtype == np.float32 and batch.obs.shape == (4, 12 * 12 + 2)
    assert np.isfinite(buffer.sample(8).rewards.numpy()).all()


def test_nonfinite_scores_never_reach_a_sample() -> None:
    model = dqn(two_envs())
    bonus = model.replay_buffer.bonus
    bonus.explorer.bonus_model.score = lambda batch: np.where(batch.obs[:, 0] > 0, np.nan, 1.0).astype(np.float32)
    model.learn(32, callback=ReplayExplorationCallback())
    rewards = model.replay_buffer.sample(64).rewards.numpy()
    # the rows with a non-finite score get no bonus, the others the centred bonus of a constant: 0
    np.testing.assert_array_equal(rewards, -1.0)
    assert bonus.explorer.counters["nonfinite_rewards"] > 0


def test_settings_come_as_plain_mappings_and_bad_ones_are_named() -> None:
    with pytest.raises(ConfigError, match="replay_buffer_kwargs config: unknown key 'coef'"):
        dqn(two_envs(), config={"coef": 1.0})
    with pytest.raises(TypeError, match="unknown key 'beta'; accepted keys: config, seed, handle_timeout_termination"):
        DQN("MlpPolicy", two_envs(), replay_buffer_class=ExplorationReplayBuffer, replay_buffer_kwargs={"beta": 1})
    with pytest.raises(TypeError, match="'n_sampled_goal' is a HER setting"):
        DQN(
            "MlpPolicy",
            two_envs(),
            replay_buffer_class=ExplorationReplayBuffer,
            replay_buffer_kwargs={"n_sampled_goal": 4},
        )
    with pytest.raises(ValueError, match="optimize_memory_usage=True is not supported"):
        dqn(two_envs(), optimize_memory_usage=True)


def test_agents_the_buffer_cannot_serve_are_refused_with_what_to_do() -> None:
    with pytest.raises(TypeError, match="replay_buffer_class=ExplorationReplayBuffer"):
        DQN("MlpPolicy", two_envs(), device="cpu").learn(8, callback=ReplayExplorationCallback())
    with pytest.raises(TypeError, match="on-policy: its exploration module is ExplorationCallback"):
        PPO("MlpPolicy", two_envs(), n_steps=4, batch_size=8, device="cpu").learn(
            8, callback=ReplayExplorationCallback()
        )
    with pytest.raises(
        TypeError, match=r"off-policy ones .* replay_buffer_class=ilvm_rl\.sb3\.ExplorationReplayBuffer"
    ):
        dqn(two_envs()).learn(8, callback=ExplorationCallback())
    with pytest.raises(TypeError, match=r"neither an on-policy .* nor an off-policy"):
        exploration_buffer(object())
    with pytest.raises(ValueError, match="buffer_size=8 holds fewer transitions than one batch"):
        dqn(two_envs(), buffer_size=8, batch_size=16).learn(8, callback=ReplayExplorationCallback())


def test_her_buffers_are_refused() -> None:
    from stable_baselines3.common.envs import BitFlippingEnv

    model = DQN(
        "MultiInputPolicy",
        BitFlippingEnv(n_bits=4),
        replay_buffer_class=HerReplayBuffer,
        learning_starts=8,
        device="cpu",
    )
    with pytest.raises(TypeError, match="HerReplayBuffer"):
        model.learn(8, callback=ReplayExplorationCallback())


def test_without_the_callback_the_bonus_is_constant_and_a_schedule_is_refused() -> None:
    model = dqn(two_envs())
    model.learn(32)
    total, count = model.replay_buffer.bonus.metrics["int_coef"]
    assert count > 0 and total == count  # β = 1 at every sampled batch
    model = dqn(two_envs(), dataclasses.replace(TINY, int_coef_final=0.0))
    with pytest.raises(ValueError, match="int_coef_final sets a β schedule"):
        model.learn(32)


def test_the_schedule_follows_the_steps_taken() -> None:
    # β falls to 0.5, never to 0: the module never retires, and every batch is scored
    model = dqn(
        two_envs(),
        dataclasses.replace(TINY, int_coef=1.0, int_coef_final=0.5, int_coef_final_at=1.0),
        learning_starts=0,
    )
    explorer, coefs = model.replay_buffer.bonus.explorer, []
    coefficient = explorer.coefficient
    explorer.coefficient = lambda progress: coefs.append(coefficient(progress)) or coefs[-1]
    model.learn(64, callback=ReplayExplorationCallback())
    # trains after every 4 calls of 2 envs' steps: 8, 16, ... 64 of 64 steps
    assert coefs == pytest.approx(np.repeat(1.0 - 0.5 * np.arange(8, 72, 8) / 64, 2).tolist())


def test_replay_and_module_are_saved_without_pickle_and_restored(tmp_path: Path) -> None:
    model = dqn(two_envs(), buffer_size=40)
    callback = ReplayExplorationCallback(checkpoint_dir=tmp_path / "exploration")
    model.learn(64, callback=callback)  # the ring has wrapped: 32 rows per env, 20 kept
    callback.save()
    save_replay(model.replay_buffer, tmp_path / "replay.npz")
    with np.load(tmp_path / "replay.npz", allow_pickle=False) as stored:
        assert "observations" in stored.files and bool(stored["full"])

    fresh = dqn(two_envs(), buffer_size=40)
    load_replay(fresh.replay_buffer, tmp_path / "replay.npz")
    restore_module(fresh, tmp_path / "exploration")
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        np.testing.assert_array_equal(getattr(fresh.replay_buffer, name), getattr(model.replay_buffer, name))
    assert (fresh.replay_buffer.pos, fresh.replay_buffer.full) == (model.replay_buffer.pos, True)
    batch = model.replay_buffer.bonus.transitions(np.arange(20), np.zeros(20, dtype=np.int64))
    np.testing.assert_array_equal(
        fresh.replay_buffer.bonus.explorer.bonus_model.score(batch),
        model.replay_buffer.bonus.explorer.bonus_model.score(batch),
    )
    # a fresh buffer has nothing new to score: what it restored counts as scored
    assert fresh.replay_buffer.bonus.rows_scored == fresh.replay_buffer.bonus.rows_added == 20

    with pytest.raises(CheckpointError, match="array 'observations' is float32\\[20, 2, 2\\], the buffer's is"):
        load_replay(dqn(two_envs(), buffer_size=80).replay_buffer, tmp_path / "replay.npz")
    with pytest.raises(CheckpointError, match="missing"):
        load_replay(fresh.replay_buffer, tmp_path / "nothing.npz")


def test_a_checkpoint_that_keeps_the_raw_bonus_statistics_still_loads(tmp_path: Path) -> None:
    """Checkpoints written while the bonus was centred on a running mean of the raw bonus hold its
    statistics (``stats.raw_reward.*``); nothing reads them any more, and the module loads."""
    model = dqn(two_envs())
    callback = ReplayExplorationCallback(checkpoint_dir=tmp_path)
    model.learn(32, callback=callback)
    callback.save()
    weights = load_file(str(tmp_path / "weights.safetensors"))
    assert not any(key.startswith("stats.raw_reward.") for key in weights)
    older = {f"stats.raw_reward.{key}": torch.ones(1, dtype=torch.float64) for key in ("mean", "var", "count")}
    save_file({**weights, **older}, str(tmp_path / "weights.safetensors"))
    fresh = dqn(two_envs())
    restore_module(fresh, tmp_path)
    batch = model.replay_buffer.bonus.transitions(np.arange(8), np.zeros(8, dtype=np.int64))
    np.testing.assert_array_equal(
        fresh.replay_buffer.bonus.explorer.bonus_model.score(batch),
        model.replay_buffer.bonus.explorer.bonus_model.score(batch),
    )


def test_a_checkpoint_taken_during_the_warm_up_keeps_its_steps_for_the_bonus_statistics(tmp_path: Path) -> None:
    """Steps added before any batch was sampled (``learning_starts``) are scored after a restore, as
    they would have been without one."""
    model = dqn(two_envs(), learning_starts=100)
    callback = ReplayExplorationCallback(checkpoint_dir=tmp_path / "exploration")
    model.learn(24, callback=callback)  # 12 steps of each env, all in the warm-up: none scored yet
    assert model.replay_buffer.bonus.rows_scored == 0
    callback.save()
    save_replay(model.replay_buffer, tmp_path / "replay.npz")
    fresh = dqn(two_envs(), learning_starts=100)
    load_replay(fresh.replay_buffer, tmp_path / "replay.npz")
    restore_module(fresh, tmp_path / "exploration")
    assert (fresh.replay_buffer.bonus.rows_added, fresh.replay_buffer.bonus.rows_scored) == (12, 0)
    for buffer in (model.replay_buffer, fresh.replay_buffer):
        buffer.sample(4)  # scores the warm-up
    stats, fresh_stats = (
        model.replay_buffer.bonus.explorer.scaler.stats,
        fresh.replay_buffer.bonus.explorer.scaler.stats,
    )
    assert fresh_stats.count == stats.count > 0
    np.testing.assert_allclose(fresh_stats.std, stats.std, rtol=1e-6)
