"""A sparse-reward navigation hall with a noisy TV: ``ilvm/NoisyTVNone-v0``, ``ilvm/NoisyTVAction-v0``
and ``ilvm/NoisyTVPlace-v0``; and the TV machinery that the open room (``room.py``) shares."""

from __future__ import annotations

from typing import Any, Literal, get_args

import numpy as np
from gymnasium import spaces

from .layout import GridEnv, Layout

TVKind = Literal["none", "action", "place"]

NAVIGATION_ART = """
    #########################
    #TT.....#...............#
    #TT.....#.......#.......#
    #.......#.......#.......#
    #S......#.......#......G#
    #.......#.......#.......#
    #.......#.......#.......#
    #...............#.......#
    #########################
"""
"""The hall: start ``S`` and goal ``G`` at either end of the middle row, two partitions between them
with the gap of the first in the bottom row and of the second in the top row (a shortest route of 34
moves); the place TV ``T`` two moves above the start, off the shortest route."""

TV_ACTION = 4
"""The action that switches the action TV on (a no-op without it); 0-3 move up, right, down, left."""


class TVGridEnv(GridEnv):
    """A grid walk to a goal that ends the episode, past a noisy TV or none: the rules that the hall
    (:class:`NoisyTVEnv`) and the open room (``room.OpenRoomEnv``) share.

    Observation: float32 vector of shape (2 + tv_dims,) in [-1, 1]: the agent's (x, y) scaled to
    [-1, 1] over the layout's floor, then the TV dims (the screen), all zero while the TV is off and
    fresh uniform values in [-1, 1] on every step it plays.

    Actions: Discrete(5): 0 up, 1 right, 2 down, 3 left (a move into a wall stays put), 4 TV.

    TV, by ``tv``:
        - ``"none"``: no TV; action 4 is a no-op and the TV dims stay zero (the reference task).
        - ``"action"``: each use of action 4 shows fresh random values in the TV dims and the agent
          does not move; the TV dims are zero after every other action.
        - ``"place"``: the TV plays (fresh random values) on every step that ends in the layout's
          region (the cells drawn ``T``), whatever the action; action 4 is a no-op.
        The TV pays nothing: the goal is reached only by leaving it.

    Reward: :meth:`goal_reward` on the step that reaches the goal, which ends the episode
    (terminated); 0 on every other step.

    Info: ``on_tv`` (bool), whether the TV showed noise on this step (False after reset), so that a
    benchmark can report the share of steps spent on the TV.

    Args:
        layout: the grid; its ``T`` cells are the place TV's region.
        tv: which TV plays: ``"none"``, ``"action"`` or ``"place"``.
        tv_dims: number of TV dims in the observation.
        render_mode: ``"ansi"`` renders the grid as text, the agent drawn ``A``;
            other modes render nothing (SB3 asks for ``"rgb_array"``).
    """

    def __init__(self, layout: Layout, tv: TVKind, tv_dims: int, render_mode: str | None = None) -> None:
        if tv not in get_args(TVKind):
            raise ValueError(f"tv must be one of {get_args(TVKind)}, got {tv!r}")
        if tv_dims < 1:
            raise ValueError(f"tv_dims must be >= 1 (the TV needs a dim to show noise in), got {tv_dims}")
        if tv == "place" and not layout.region:
            raise ValueError("tv='place' needs a layout with a region drawn 'T' for the TV to play in")
        super().__init__(layout, render_mode)
        self.tv = tv
        self.tv_dims = tv_dims
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2 + tv_dims,), dtype=np.float32)
        self.action_space = spaces.Discrete(5)
        self._steps = 0

    @property
    def steps(self) -> int:
        """Steps taken since the last reset."""
        return self._steps

    def goal_reward(self) -> float:
        """The reward for reaching the goal on the current step (after :attr:`steps` was counted)."""
        return 1.0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._restart(seed)
        self._steps = 0
        return self._observation(on_tv=False), {"on_tv": False}

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = self._checked(action)
        self._steps += 1
        if action != TV_ACTION:
            self._cell = self.layout.move(self._cell, action)
        on_tv = (self.tv == "action" and action == TV_ACTION) or (
            self.tv == "place" and self._cell in self.layout.region
        )
        terminated = self._cell == self.layout.goal
        reward = self.goal_reward() if terminated else 0.0
        return self._observation(on_tv), reward, terminated, False, {"on_tv": on_tv}

    def _observation(self, on_tv: bool) -> np.ndarray:
        observation = np.zeros(2 + self.tv_dims, dtype=np.float32)
        observation[:2] = self.layout.positions[self._cell]
        if on_tv:
            observation[2:] = self.np_random.uniform(-1.0, 1.0, size=self.tv_dims)
        return observation


class NoisyTVEnv(TVGridEnv):
    """Walk across a 7 x 23 hall through two partitions to a goal 34 moves away, past a noisy TV or none.

    The agent starts at the left end of the middle row; the goal is at the right end of the same row.
    The partitions' gaps alternate between the bottom and the top row, so no constant direction (the
    habit a policy falls into without an entropy bonus) reaches the goal: an open hall with the goal
    straight ahead was solved by plain PPO in a few thousand steps. A uniformly random policy reached
    the goal in 1 of 10,000 episodes of 200 steps.

    Observation, actions, TV and info as :class:`TVGridEnv` says; the place TV plays in the 2 x 2
    region drawn ``T`` in :data:`NAVIGATION_ART`, two moves from the start. The TV is off the shortest
    route.

    Reward: +1 on reaching the goal, which ends the episode (terminated); 0 on every other step.
    The ids are registered with ``max_episode_steps=200`` (truncation) and ``reward_threshold=0.9``:
    solved when at least 9 of the last 10 episodes reach the goal.

    Args:
        tv: which TV plays: ``"none"``, ``"action"`` or ``"place"``.
        tv_dims: number of TV dims in the observation.
        render_mode: ``"ansi"`` renders the hall as text, the agent drawn ``A``;
            other modes render nothing (SB3 asks for ``"rgb_array"``).
    """

    def __init__(self, tv: TVKind = "none", tv_dims: int = 4, render_mode: str | None = None) -> None:
        super().__init__(Layout.from_art(NAVIGATION_ART), tv, tv_dims, render_mode)
