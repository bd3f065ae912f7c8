"""The intrinsic stream reaches SB3's advantages as designed, and the task's stream stays SB3's own."""

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize
from toy_envs import CounterEnv

from ilvm_rl import ExplorationCallback, ExplorationConfig, ModelConfig
from ilvm_rl.config import ConfigError
from ilvm_rl.exploration import DisagreementConfig, ICMConfig, ILVMScoreConfig, RNDConfig
from ilvm_rl.exploration.explorer import Explorer
from ilvm_rl.exploration.streams import non_episodic_gae
from ilvm_rl.sb3.callback import intrinsic_share

TINY_MODEL = ModelConfig(objectives=("energy", "elbo"), latent_dim=2, hidden_sizes=(16,), n_samples=4)
# β held and no handover: the tests study the bonus at work through a whole run; those of the β
# schedule and of the handover set them
TINY = ExplorationConfig(
    bonus=ILVMScoreConfig(score="excess_error"),
    int_coef_final=None,
    handover=False,
    store_capacity=1000,
    batch_size=32,
    updates_per_rollout=1,
    model=TINY_MODEL,
)


class BufferSpy(BaseCallback):
    """Copies the rollout buffer's rewards, advantages and returns at rollout end (placed before and
    after the exploration callback)."""

    def __init__(self):
        super().__init__()
        self.rewards: list[np.ndarray] = []
        self.advantages: list[np.ndarray] = []
        self.returns: list[np.ndarray] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.locals["rollout_buffer"]
        self.rewards.append(buffer.rewards.copy())
        self.advantages.append(buffer.advantages.copy())
        self.returns.append(buffer.returns.copy())


def test_non_episodic_gae_matches_a_hand_computed_example() -> None:
    gamma, lam = 0.9, 0.8
    rewards = np.array([[1.0], [0.0], [2.0]])
    values = np.array([[0.5], [1.0], [0.0]])
    advantages = non_episodic_gae(rewards, values, np.array([3.0]), gamma, lam)
    delta2, delta1, delta0 = 2.0 + 0.9 * 3.0 - 0.0, 0.0 + 0.9 * 0.0 - 1.0, 1.0 + 0.9 * 1.0 - 0.5
    adv2 = delta2
    adv1 = delta1 + gamma * lam * adv2
    adv0 = delta0 + gamma * lam * adv1
    np.testing.assert_allclose(advantages[:, 0], [adv0, adv1, adv2], rtol=1e-6)


def two_stream_envs() -> DummyVecEnv:
    """Env 0 terminates every 2 steps; env 1 is cut by a time limit every 3 steps (CounterEnv's
    observation is the step count, 0 after a reset)."""
    return DummyVecEnv([lambda: CounterEnv(length=2), lambda: TimeLimit(CounterEnv(length=10), max_episode_steps=3)])


def test_intrinsic_stream_runs_through_terminations_truncations_and_rollouts() -> None:
    gamma, lam, n_steps = 0.9, 0.8, 4
    config = dataclasses.replace(TINY, int_gamma=gamma, int_gae_lambda=lam, int_coef=0.5, ext_coef=2.0)
    model = PPO("MlpPolicy", two_stream_envs(), n_steps=n_steps, batch_size=8, n_epochs=1, seed=0, device="cpu")
    exploration = ExplorationCallback(config, seed=0)
    before, after = BufferSpy(), BufferSpy()

    class KnownStream(BaseCallback):
        """Replaces the module's score, scale and V_int by known functions of the step count."""

        def _on_step(self) -> bool:
            return True

        def _on_training_start(self) -> None:
            explorer = exploration.explorer
            explorer.bonus_model.score = lambda batch: batch.next_obs[:, 0].astype(np.float32)
            explorer.scaler.scale = lambda raw: raw.astype(np.float32)
            explorer.int_critic.values = lambda obs: (0.1 * obs[:, 0]).astype(np.float32)

    model.learn(3 * n_steps * 2, callback=CallbackList([KnownStream(), before, exploration, after]))
    # step counts of the obs each action was taken in, per env, over the three rollouts: the
    # rewards are the counts the steps led to (2 at env 0's terminations, 3 at env 1's truncations)
    counts = np.array([[0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1], [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]]).T
    rewards = np.array([[1, 2] * 6, [1, 2, 3] * 4], dtype=np.float64).T
    # the next value is that of the next observation, a reset one (count 0) after an episode end, and
    # after a rollout's last step that of the observation the next rollout starts from
    next_counts = np.vstack([counts[1:], [[0, 0]]])
    deltas = rewards + gamma * 0.1 * next_counts - 0.1 * counts
    for rollout in range(3):
        rows = slice(rollout * n_steps, (rollout + 1) * n_steps)
        expected = np.zeros((n_steps, 2))
        running = np.zeros(2)
        for step in reversed(range(n_steps)):
            running = deltas[rows][step] + gamma * lam * running
            expected[step] = running
        ext = before.advantages[rollout]
        np.testing.assert_allclose(after.advantages[rollout], 2.0 * ext + 0.5 * expected, rtol=1e-5, atol=1e-6)
        # the task's stream is SB3's: rewards and returns (the value head's targets) are untouched
        np.testing.assert_array_equal(after.rewards[rollout], before.rewards[rollout])
        np.testing.assert_array_equal(after.returns[rollout], before.returns[rollout])
    assert exploration.explorer.store.latest(2 * n_steps).terminated.any()
    assert exploration.explorer.store.latest(2 * n_steps).truncated.any()


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
    before, after = BufferSpy(), BufferSpy()
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
    for plain, mixed in zip(before.advantages, after.advantages, strict=True):
        assert np.all(np.isfinite(mixed)) and not np.allclose(2.0 * plain, mixed)


def test_the_module_reads_original_observations_under_vec_normalize() -> None:
    env = VecNormalize(two_stream_envs(), norm_obs=True, norm_reward=True)
    model = PPO("MlpPolicy", env, n_steps=6, batch_size=12, n_epochs=1, seed=0, device="cpu")
    exploration = ExplorationCallback(TINY, seed=0)
    model.learn(24, callback=exploration)
    stored = exploration.explorer.store.latest(24)
    # raw step counts, as CounterEnv returns them: whole numbers, terminal ones at episode ends
    np.testing.assert_array_equal(stored.obs[:, 1], 1.0)
    np.testing.assert_array_equal(stored.obs[:, 0], np.round(stored.obs[:, 0]))
    ends = stored.terminated | stored.truncated
    np.testing.assert_array_equal(stored.next_obs[~ends, 0], stored.obs[~ends, 0] + 1)
    assert set(stored.next_obs[stored.terminated, 0]) == {2.0} and set(stored.next_obs[stored.truncated, 0]) == {3.0}


def test_the_module_reads_images_in_one_layout_under_vec_normalize() -> None:
    """SB3 moves a channel-last image's channels first outside VecNormalize, whose original
    observations keep them last: the module stores what it would store without VecNormalize."""
    stored = []
    for normalise in (False, True):
        env = make_vec_env("ImageToy-v0", n_envs=2, seed=0)
        env = VecNormalize(env, norm_obs=False, norm_reward=True) if normalise else env
        model = PPO("MlpPolicy", env, n_steps=6, batch_size=12, n_epochs=1, seed=0, device="cpu")
        config = dataclasses.replace(TINY, bonus=RNDConfig(8), int_coef_final=None)  # scores to the end
        exploration = ExplorationCallback(config, seed=0)
        model.learn(12, callback=exploration)  # one rollout, an episode end in each env
        replay = exploration.explorer.replay
        stored.append(replay.latest(replay.size))
    assert stored[0].truncated.any() or stored[0].terminated.any()
    for name in ("obs", "next_obs"):
        np.testing.assert_array_equal(getattr(stored[0], name), getattr(stored[1], name))


def test_a_module_with_no_weight_leaves_the_agent_unchanged() -> None:
    """The module draws from random streams of its own: with β = 0 and ext_coef = 1 PPO learns
    exactly what it learns without the module."""
    trained = []
    for callback in (None, ExplorationCallback(dataclasses.replace(TINY, int_coef=0.0, ext_coef=1.0), seed=0)):
        model = PPO("MlpPolicy", two_stream_envs(), n_steps=8, batch_size=8, n_epochs=2, seed=0, device="cpu")
        model.learn(48, callback=callback)
        trained.append(torch.cat([p.detach().flatten() for p in model.policy.parameters()]))
    assert torch.equal(trained[0], trained[1])


class TagSpy(BaseCallback):
    """Records one logged value after every rollout (it runs after the exploration callback)."""

    def __init__(self, tag: str):
        super().__init__()
        self.tag = tag
        self.values: list[float] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.values.append(self.logger.name_to_value[self.tag])


def test_beta_follows_the_steps_taken_and_reaches_its_final_value() -> None:
    config = dataclasses.replace(TINY, int_coef=1.0, int_coef_final=0.0, int_coef_final_at=1.0)
    model = PPO("MlpPolicy", two_stream_envs(), n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu")
    spy = TagSpy("ilvm/int_coef")
    model.learn(64, callback=CallbackList([ExplorationCallback(config, seed=0), spy]))
    np.testing.assert_allclose(spy.values, [0.75, 0.5, 0.25, 0.0])


def test_the_intrinsic_share_weighs_both_parts_as_they_are_mixed() -> None:
    assert intrinsic_share(2.0, 6.0) == 0.75
    assert intrinsic_share(2.0, 0.0) == 0.0
    assert np.isnan(intrinsic_share(0.0, 0.0))
    shares = []
    for int_coef in (1.0, 0.0):
        model = PPO("MlpPolicy", two_stream_envs(), n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu")
        spy = TagSpy("ilvm/int_advantage_share")
        config = dataclasses.replace(TINY, int_coef=int_coef)
        model.learn(32, callback=CallbackList([ExplorationCallback(config, seed=0), spy]))
        shares.append(spy.values)
    assert all(0.0 < share <= 1.0 for share in shares[0])
    assert shares[1] == [0.0, 0.0]


class StopAfter(BaseCallback):
    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps

    def _on_step(self) -> bool:
        return self.num_timesteps < self.steps


def test_a_rollout_stopped_by_another_callback_does_not_break_the_next_learn() -> None:
    model = PPO("MlpPolicy", two_stream_envs(), n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu")
    exploration = ExplorationCallback(TINY, seed=0)
    model.learn(64, callback=CallbackList([exploration, StopAfter(22)]))  # stops 3 steps into a rollout
    model.learn(32, callback=exploration, reset_num_timesteps=False)
    assert np.all(np.isfinite(model.rollout_buffer.advantages))


def test_settings_may_come_as_a_plain_mapping_with_bad_keys_named() -> None:
    callback = ExplorationCallback({"samples": 8, "int_coef": 0.5, "model": {"latent_dim": 2}})
    assert callback.config.int_coef == 0.5 and callback.config.model.latent_dim == 2
    assert isinstance(callback.config.bonus, DisagreementConfig) and callback.config.bonus.samples == 8
    with pytest.raises(ConfigError, match="ExplorationCallback config: unknown key 'coef'"):
        ExplorationCallback({"coef": 0.5})


@pytest.mark.parametrize("algo", [PPO, A2C])
@pytest.mark.parametrize(
    "action_space",
    [spaces.Discrete(3), spaces.MultiDiscrete([2, 3]), spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)],
    ids=["discrete", "multidiscrete", "box"],
)
@pytest.mark.parametrize(
    "bonus",
    [
        ILVMScoreConfig(score="excess_error"),
        ILVMScoreConfig(score="novelty"),
        ILVMScoreConfig(score="latent_surprise"),
        DisagreementConfig(),
        RNDConfig(),
        ICMConfig(),
    ],
    ids=["excess_error", "novelty", "latent_surprise", "disagreement", "rnd", "icm"],
)
def test_algorithms_and_action_spaces_train_with_the_bonus(algo, action_space, bonus) -> None:
    env = make_vec_env(lambda: CounterEnv(length=4, action_space=action_space), n_envs=2, seed=0)
    minibatch = {"batch_size": 16} if algo is PPO else {}  # one rollout of 8 steps × 2 envs
    model = algo("MlpPolicy", env, n_steps=8, seed=0, policy_kwargs={"net_arch": [8]}, device="cpu", **minibatch)
    config = dataclasses.replace(TINY, bonus=bonus, store_capacity=100, batch_size=16)
    callback = ExplorationCallback(config, seed=0)
    model.learn(48, callback=callback)
    assert callback.explorer.store.size == 48
    assert np.all(np.isfinite(model.rollout_buffer.rewards))


def test_the_adversarial_objective_trains_its_critic_through_the_module_and_its_checkpoint(tmp_path) -> None:
    """The ``adversarial`` objective end to end: a PPO run whose latent-surprise bonus reads the posterior
    that the critic trains, and a checkpoint that keeps the critic's optimiser."""
    env = make_vec_env(CounterEnv, n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=8, batch_size=16, seed=0, policy_kwargs={"net_arch": [8]}, device="cpu")
    adversarial = ModelConfig(objectives=("adversarial",), latent_dim=2, hidden_sizes=(16,), critic_hidden_sizes=(16,))
    config = ExplorationConfig(
        bonus=ILVMScoreConfig(score="latent_surprise"), store_capacity=100, batch_size=16, model=adversarial
    )
    callback = ExplorationCallback(config, seed=0)
    model.learn(32, callback=callback)
    metrics = callback.explorer.update(recent=16)
    assert {"loss/critic", "loss/generator", "loss/r1"} <= set(metrics) and metrics["skipped_updates"] == 0
    assert set(callback.explorer.bonus_model.optimisers()) == {"model", "critic"}
    callback.save(tmp_path / "module")
    loaded = ExplorationCallback.load(tmp_path / "module", model).explorer
    assert loaded is not None
    critic, restored = callback.explorer.bonus_model.optims.critic, loaded.bonus_model.optims.critic
    assert critic is not None and restored is not None
    for before, after in zip(critic.params, restored.params, strict=True):
        assert torch.equal(before, after)
        assert torch.equal(critic.optimizer.state[before]["exp_avg"], restored.optimizer.state[after]["exp_avg"])


def test_off_policy_algorithms_are_refused_with_a_clear_error() -> None:
    from stable_baselines3 import DQN

    model = DQN("MlpPolicy", make_vec_env(CounterEnv, n_envs=1), learning_starts=0, device="cpu")
    with pytest.raises(TypeError, match="on-policy"):
        model.learn(10, callback=ExplorationCallback(TINY))


def silent_task_envs(norm_reward: bool) -> VecNormalize:
    """Two envs that pay -1 a step and only ever end by a time limit: the task says nothing. Under
    ``norm_reward`` the rewards the policy sees vary all the same."""
    env = make_vec_env(lambda: TimeLimit(CounterEnv(length=10), max_episode_steps=3), n_envs=2, seed=0)
    return VecNormalize(env, norm_obs=False, norm_reward=norm_reward)


@pytest.mark.parametrize("norm_reward", [False, True])
def test_until_the_task_speaks_handover_changes_nothing(norm_reward: bool) -> None:
    """The task's rewards are read as paid: normalised ones vary even where the task's do not."""
    mixed: dict[bool, BufferSpy] = {}
    for handover in (False, True):
        model = PPO(
            "MlpPolicy", silent_task_envs(norm_reward), n_steps=4, batch_size=8, n_epochs=1, seed=0, device="cpu"
        )
        exploration = ExplorationCallback(dataclasses.replace(TINY, handover=handover), seed=0)
        mixed[handover] = BufferSpy()
        model.learn(24, callback=CallbackList([exploration, mixed[handover]]))
        assert not exploration.explorer.task_spoke
        assert exploration.explorer.scaler.stats.memory == TINY.scale_memory
    for plain, waiting in zip(mixed[False].advantages, mixed[True].advantages, strict=True):
        np.testing.assert_array_equal(waiting, plain)


def test_terminations_hand_over_once_they_fill_the_share_and_the_scale_stops_forgetting(tmp_path) -> None:
    """Env 0 terminates every 2 steps paying -1 (the task speaks), env 1 is cut by a time limit
    every 3 (it does not); the first rollout's 3 episodes are the reference and say nothing, so 58
    of the 100 episodes finished at step 120 speak."""
    model = PPO("MlpPolicy", two_stream_envs(), n_steps=4, batch_size=8, n_epochs=1, seed=0, device="cpu")
    exploration = ExplorationCallback(dataclasses.replace(TINY, handover=True), seed=0)
    spoke, share = TagSpy("ilvm/task_spoke"), TagSpy("ilvm/task_speaking_share")
    model.learn(8 * 40, callback=CallbackList([exploration, spoke, share]))  # 40 rollouts of 4 steps
    explorer = exploration.explorer
    assert spoke.values == [0.0] * 29 + [1.0] * 11  # rollout 30 ends at step 120
    assert share.values[0] == 0.0 and share.values[-1] == pytest.approx(0.58)  # frozen at step 120
    assert explorer.task_spoke and explorer.task_reward_fences == (-1.0, -1.0)
    assert explorer.scaler.stats.memory is None
    exploration.save(tmp_path / "module")
    restored = ExplorationCallback.load(tmp_path / "module", model).explorer
    assert restored.task_spoke and restored.task_reward_fences == (-1.0, -1.0)
    assert restored.scaler.stats.memory is None
    assert restored.finished_episodes_spoke == explorer.finished_episodes_spoke
    np.testing.assert_array_equal(restored.scaler.stats.std, explorer.scaler.stats.std)


def test_a_checkpoint_before_the_handover_keeps_the_episodes_heard_so_far(tmp_path) -> None:
    model = PPO("MlpPolicy", two_stream_envs(), n_steps=4, batch_size=8, n_epochs=1, seed=0, device="cpu")
    exploration = ExplorationCallback(dataclasses.replace(TINY, handover=True), seed=0)
    model.learn(8 * 5, callback=exploration)  # 20 steps: 10 episodes of env 0 (2 in the reference), 6 of env 1
    explorer = exploration.explorer
    assert not explorer.task_spoke and list(explorer.finished_episodes_spoke).count(True) == 8
    assert len(explorer.finished_episodes_spoke) == 16
    explorer.episode_spoke[1] = True  # as if env 1's unfinished episode had paid something else
    explorer.int_episode_returns[0] = 5.0
    exploration.save(tmp_path / "module")
    restored = ExplorationCallback.load(tmp_path / "module", model).explorer
    assert not restored.task_spoke and restored.scaler.stats.memory == TINY.scale_memory
    assert restored.task_reward_fences == explorer.task_reward_fences == (-1.0, -1.0)
    assert restored.finished_episodes_spoke == explorer.finished_episodes_spoke
    # the envs start new episodes: the unfinished ones neither spoke nor earned anything in them
    assert not restored.episode_spoke.any() and not restored.int_episode_returns.any()


def test_a_checkpoint_from_before_the_fences_holds_its_first_reward_as_both(tmp_path) -> None:
    model = PPO("MlpPolicy", two_stream_envs(), n_steps=4, batch_size=8, n_epochs=1, seed=0, device="cpu")
    exploration = ExplorationCallback(dataclasses.replace(TINY, handover=True), seed=0)
    model.learn(8, callback=exploration)
    folder = exploration.save(tmp_path / "module")
    settings = json.loads((folder / "settings.json").read_text())
    del settings["task_reward_fences"], settings["reference_task_rewards"]
    (folder / "settings.json").write_text(json.dumps({**settings, "first_task_reward": -1.0}))
    assert ExplorationCallback.load(folder, model).explorer.task_reward_fences == (-1.0, -1.0)


def listening_explorer(reference: list[float]) -> Explorer:
    """A module with ``handover`` whose first rollout paid ``reference`` (both envs, no episode ended)."""
    explorer = Explorer(dataclasses.replace(TINY, handover=True), CounterEnv().observation_space, spaces.Discrete(2), 2)
    no_end = np.array([False, False])
    for reward in reference:
        explorer.observe_task(np.array([reward, reward]), no_end, no_end)
    explorer.close_task_reference()
    return explorer


def play_episodes(explorer: Explorer, paid: list[float]) -> None:
    """One-step episodes on env 0, each paying ``paid[i]`` and cut by a time limit; env 1's one
    episode pays -1 and never ends."""
    for reward in paid:
        explorer.observe_task(np.array([reward, -1.0]), np.array([False, False]), np.array([True, False]))


def test_the_handover_waits_for_a_full_window_of_episodes_at_the_share() -> None:
    explorer = listening_explorer([-1.0])
    play_episodes(explorer, [0.5] * 10 + [-1.0] * 89)  # 99 episodes, 10 of them paid something else
    assert not explorer.task_spoke and explorer.task_speaking_share == pytest.approx(10 / 99)
    assert explorer.scaler.stats.memory == TINY.scale_memory
    play_episodes(explorer, [-1.0])
    assert explorer.task_spoke and explorer.scaler.stats.memory is None


def test_a_goal_reached_by_chance_in_a_few_episodes_does_not_hand_over() -> None:
    explorer = listening_explorer([-1.0])
    play_episodes(explorer, [0.5] * 9 + [-1.0] * 191)  # at most 9 of any 100 latest episodes
    assert not explorer.task_spoke and explorer.task_speaking_share == 0.0
    assert explorer.scaler.stats.memory == TINY.scale_memory


def test_a_termination_says_nothing_where_the_task_pays_nothing() -> None:
    """Episodes that end early change no return when every reward is 0 (a fall into lava in a task
    that pays only at its goal)."""
    explorer = listening_explorer([0.0])
    no_end = np.array([False, False])
    explorer.observe_task(np.zeros(2), np.array([True, False]), no_end)
    explorer.observe_task(np.array([0.0, 1.0]), np.array([False, True]), no_end)
    assert list(explorer.finished_episodes_spoke) == [False, True]


def test_an_action_cost_that_varies_says_nothing_and_the_goal_beyond_it_speaks() -> None:
    """MountainCarContinuous-v0 pays -0.1·a² a step and 100 at the flag, which ends the episode."""
    explorer = listening_explorer([-0.1 * a**2 for a in np.linspace(-1.0, 1.0, 64)])
    play_episodes(explorer, [-1e-9, -0.1, 0.0])  # a policy that learned to stand still, or pushes hard
    assert list(explorer.finished_episodes_spoke) == [False, False, False]
    play_episodes(explorer, [100.0])
    explorer.observe_task(np.array([-0.05, -0.05]), np.array([True, False]), np.array([False, False]))
    assert list(explorer.finished_episodes_spoke)[-2:] == [True, True]  # the flag; an end the task chose


def test_a_goal_reached_by_chance_in_the_first_rollout_does_not_move_the_fences() -> None:
    explorer = listening_explorer([0.0] * 30 + [1.0])
    assert explorer.task_reward_fences == (0.0, 0.0)
    play_episodes(explorer, [0.0, 1.0])
    assert list(explorer.finished_episodes_spoke) == [False, True]


def test_episodes_that_end_in_the_first_rollout_say_nothing() -> None:
    explorer = Explorer(dataclasses.replace(TINY, handover=True), CounterEnv().observation_space, spaces.Discrete(2), 2)
    explorer.observe_task(np.array([-1.0, 1.0]), np.array([True, True]), np.array([False, False]))
    assert list(explorer.finished_episodes_spoke) == [False, False] and explorer.task_reward_fences is None
    explorer.close_task_reference()
    assert explorer.task_reward_fences == (-3.5, 3.5)  # quartiles -0.5 and 0.5, 3 ranges beyond


class ActionRecorder(gym.Wrapper):
    """Keeps every action the environment received."""

    def __init__(self, env: gym.Env, received: list[np.ndarray]):
        super().__init__(env)
        self.received = received

    def step(self, action: np.ndarray):
        self.received.append(np.array(action, dtype=np.float32))
        return super().step(action)


def test_the_module_reads_the_actions_the_env_received_when_gsde_squashes_them() -> None:
    received: list[np.ndarray] = []
    env = make_vec_env("Pendulum-v1", seed=0, wrapper_class=ActionRecorder, wrapper_kwargs={"received": received})
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        use_sde=True,
        policy_kwargs={"squash_output": True, "net_arch": [8]},
        seed=0,
        device="cpu",
    )
    exploration = ExplorationCallback(TINY, seed=0)
    model.learn(16, callback=exploration)
    stored = exploration.explorer.store.latest(16)
    # the policy squashes into [-1, 1]; Pendulum-v1 received torques in [-2, 2]
    assert np.abs(np.stack(received)).max() > 1.0
    np.testing.assert_allclose(stored.actions, np.stack(received), rtol=1e-6)
