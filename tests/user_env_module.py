"""A module of one's own that registers an environment, named as ``user_env_module:UserCounter-v0``
(the form Gymnasium gives a user's env): nothing imports it but the id itself."""

import gymnasium as gym
from toy_envs import CounterEnv

gym.register(
    "UserCounter-v0", entry_point=CounterEnv, kwargs={"length": 8}, max_episode_steps=20, reward_threshold=-5.0
)
# Pendulum-v1 with short episodes: an off-policy agent for Box actions logs within a toy budget
gym.register("UserPendulum-v0", entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv", max_episode_steps=32)
