"""Tiny environments with known observations, for checking what the integration records."""

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CounterEnv(gym.Env):
    """Observation = steps taken so far; terminates after ``length`` steps (or is truncated by a
    TimeLimit). Reset gives observation 0, so a reset observation is easy to tell from a terminal one."""

    def __init__(self, length: int = 3, action_space: spaces.Space | None = None):
        self.length = length
        self.observation_space = spaces.Box(0.0, 100.0, shape=(2,), dtype=np.float32)
        self.action_space = action_space or spaces.Discrete(2)
        self.count = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.count, 1.0], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.count = 0
        return self._obs(), {}

    def step(self, action):
        self.count += 1
        return self._obs(), -1.0, self.count >= self.length, False, {}


CRASH_MARKER_VARIABLE = "ILVM_RL_TEST_CRASH_MARKER"


class CrashOnceEnv(CounterEnv):
    """Kills its own process the first time it is built (as an out-of-memory kill would), then
    behaves like :class:`CounterEnv`. The file named by ``$ILVM_RL_TEST_CRASH_MARKER`` remembers
    the crash across processes."""

    def __init__(self) -> None:
        marker = os.environ[CRASH_MARKER_VARIABLE]
        if not os.path.exists(marker):
            with open(marker, "w"):
                pass
            os._exit(1)
        super().__init__(length=5)


gym.register("CrashOnce-v0", entry_point=CrashOnceEnv, max_episode_steps=20)


class ImageEnv(gym.Env):
    """A bright square on a small dark image (height, width, channel): action 1 moves it one pixel down
    and right, action 0 keeps it still; the episode ends after ``length`` steps. ``dict_obs`` adds
    the square's position as a vector part of a Dict observation."""

    SIDE = 12
    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012  (SB3 asks for it; nothing is rendered)

    def __init__(self, dict_obs: bool = False, length: int = 6):
        self.length = length
        self.dict_obs = dict_obs
        image = spaces.Box(0, 255, shape=(self.SIDE, self.SIDE, 1), dtype=np.uint8)
        position = spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float32)  # unbounded: standardised
        self.observation_space = spaces.Dict({"image": image, "position": position}) if dict_obs else image
        self.action_space = spaces.Discrete(2)
        self.count = self.position = 0

    def _obs(self):
        image = np.zeros((self.SIDE, self.SIDE, 1), dtype=np.uint8)
        image[self.position : self.position + 3, self.position : self.position + 3] = 255
        if not self.dict_obs:
            return image
        return {"image": image, "position": np.full(2, self.position, dtype=np.float32)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.count = 0
        self.position = int(self.np_random.integers(0, 4))
        return self._obs(), {}

    def step(self, action):
        self.count += 1
        self.position = min(self.position + int(action), self.SIDE - 3)
        return self._obs(), float(action), self.count >= self.length, False, {}


gym.register("ImageToy-v0", entry_point=ImageEnv, max_episode_steps=20)


class SpaceEnv(CounterEnv):
    """A :class:`CounterEnv` that claims another observation space, or acts in another action space
    (for checks that refuse them before any step is taken)."""

    def __init__(self, space: spaces.Space | None = None, action_space: spaces.Space | None = None):
        super().__init__(action_space=action_space)
        self.observation_space = space or self.observation_space


gym.register("TupleObs-v0", entry_point=SpaceEnv, kwargs={"space": spaces.Tuple((spaces.Discrete(2),) * 2)})
gym.register("TextObs-v0", entry_point=SpaceEnv, kwargs={"space": spaces.Text(8)})
gym.register("TupleAction-v0", entry_point=SpaceEnv, kwargs={"action_space": spaces.Tuple((spaces.Discrete(2),) * 2)})
