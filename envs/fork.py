"""Multimodal dynamics: a two-lane road where every step forward forks at random (``ilvm/Fork-v0``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ADVANCE, SWITCH, BACK = 0, 1, 2
"""The actions: one step forward (forks), change lane, one step back."""

UPPER, LOWER = 1.0, -1.0
"""The lane coordinate of the observation; no state lies between the lanes."""

FORK_BRANCHES: tuple[tuple[float, float], ...] = ((UPPER, 0.7), (LOWER, 0.3))
"""(lane after the step, probability) of each branch of ADVANCE, the same from every state."""


class ForkEnv(gym.Env[np.ndarray, np.int64]):
    """Drive along a two-lane road to its end in the upper lane; each step forward lands in a lane
    drawn at random.

    The road has positions 0 .. ``length``; the agent starts at position 0 in the lower lane.

    Dynamics (exact; :meth:`outcomes` lists them for any state and action):
        - ADVANCE (0): position + 1 (at most ``length``); the lane becomes UPPER with probability
          0.7 or LOWER with probability 0.3 (:data:`FORK_BRANCHES`), whatever the lane was. So the
          same state and action lead to two next states, and a mean prediction puts the lane at
          0.7 - 0.3 = 0.4 (or its change at -0.6 / +1.4), where no state ever is.
        - SWITCH (1): moves to the other lane, position unchanged.
        - BACK (2): position - 1 (at least 0), lane unchanged.

    Observation: float32 vector of shape (2,): the position scaled to [-1, 1] (``2 * position /
    length - 1``) and the lane, +1 (upper) or -1 (lower).

    Actions: Discrete(3): ADVANCE, SWITCH, BACK.

    Reward: +1 on reaching the end of the road in the upper lane (by ADVANCE or SWITCH), which ends
    the episode (terminated); 0 on every other step. The best policy advances ``length`` times and
    switches once if it lands in the lower lane. The id is registered with ``max_episode_steps=50``
    (truncation) and ``reward_threshold=0.9``: solved when at least 9 of the last 10 episodes reach
    the goal. A small RL task: a uniformly random policy succeeds in about 1 episode in 4.

    Args:
        length: the last position of the road (the number of steps forward to the goal).
        render_mode: ``"ansi"`` renders the road as two lines of text, the agent drawn ``A``;
            other modes render nothing (SB3 asks for ``"rgb_array"``).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012  (Gymnasium's API)

    def __init__(self, length: int = 8, render_mode: str | None = None) -> None:
        if length < 1:
            raise ValueError(f"length must be >= 1 (the goal must lie ahead of the start), got {length}")
        self.length = length
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(3)
        cumulative = np.cumsum([probability for _, probability in FORK_BRANCHES])
        self._branch_bounds = [(lane, float(bound)) for (lane, _), bound in zip(FORK_BRANCHES, cumulative, strict=True)]
        self._position = 0
        self._lane = LOWER

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._position, self._lane = 0, LOWER
        return self._observation(), {}

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, 3), got {action!r}")
        if action == ADVANCE:
            self._position = min(self._position + 1, self.length)
            # a draw in [0, 1) falls below branch i's cumulative bound, and above the one before, with
            # probability FORK_BRANCHES[i][1]; a draw above a rounded-down last bound takes the last lane
            draw = self.np_random.random()
            for lane, bound in self._branch_bounds:
                self._lane = lane
                if draw < bound:
                    break
        elif action == SWITCH:
            self._lane = -self._lane
        else:
            self._position = max(self._position - 1, 0)
        terminated = self._position == self.length and self._lane == UPPER
        return self._observation(), float(terminated), terminated, False, {}

    def outcomes(self, observation: np.ndarray, action: int) -> list[tuple[np.ndarray, float]]:
        """Every next observation that ``action`` can lead to from ``observation``, with its probability.

        Args:
            observation: an observation of this env, shape (2,).
            action: ADVANCE, SWITCH or BACK.

        Returns:
            (next observation of shape (2,), probability) pairs whose probabilities sum to 1: one per
            branch of :data:`FORK_BRANCHES` for ADVANCE, a single pair for the other actions.
        """
        position = round((float(observation[0]) + 1.0) * self.length / 2)
        lane = float(observation[1])
        if action == ADVANCE:
            ahead = min(position + 1, self.length)
            return [(self._encode(ahead, branch_lane), probability) for branch_lane, probability in FORK_BRANCHES]
        if action == SWITCH:
            return [(self._encode(position, -lane), 1.0)]
        if action == BACK:
            return [(self._encode(max(position - 1, 0), lane), 1.0)]
        raise ValueError(f"action must be ADVANCE (0), SWITCH (1) or BACK (2), got {action!r}")

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        lanes = []
        for lane in (UPPER, LOWER):
            road = ["."] * (self.length + 1)
            if lane == UPPER:
                road[-1] = "G"
            if lane == self._lane:
                road[self._position] = "A"
            lanes.append("".join(road))
        return "\n".join(lanes)

    def _observation(self) -> np.ndarray:
        return self._encode(self._position, self._lane)

    def _encode(self, position: int, lane: float) -> np.ndarray:
        return np.array([2.0 * position / self.length - 1.0, lane], dtype=np.float32)
