"""An open room whose goal lies far from the start, with a noisy TV or none: ``ilvm/OpenRoomNone-v0``,
``ilvm/OpenRoomAction-v0`` and ``ilvm/OpenRoomPlace-v0``."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from .layout import Layout
from .navigation import TVGridEnv, TVKind

OPEN_ROOM_ART = """
    ###########################
    #........................G#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #.........................#
    #...TTT...................#
    #...TTT...................#
    #S..TTT...................#
    ###########################
"""
"""The room: 25 x 25 floor cells and no inner walls, start ``S`` in the bottom-left corner, goal ``G``
in the top-right one (48 moves apart); the place TV ``T`` along the bottom wall, three moves right of
the start, beside the diagonal but off a route that starts upwards."""

OPEN_ROOM_STEPS = 300
"""The step limit the ids are registered with, which the reward's time discount divides by."""


class OpenRoomEnv(TVGridEnv):
    """Cross an open 25 x 25 room from one corner to the opposite one, past a noisy TV or none.

    Nothing stands in the way: every route that only moves up and right is a shortest one (48 moves).
    What makes the task hard is distance in open space: a random walk spreads about sqrt(steps)
    cells, and a uniformly random policy reached the goal in 7 of 10,000 episodes of 300 steps.
    Because the goal ends the episode, a bonus paid on every step of the episode is a reason never
    to reach it.

    Observation, actions, TV and info as :class:`~ilvm_rl.envs.navigation.TVGridEnv` says, with 8
    TV dims (the screen) by default; the place TV plays on the 3 x 3 patch drawn ``T`` in
    :data:`OPEN_ROOM_ART`, three moves from the start.

    Reward: ``1 - 0.9 * t / max_steps`` on the step t that reaches the goal, which ends the episode
    (terminated); 0 on every other step (MiniGrid's time-discounted goal reward). The shortest route
    earns ``1 - 0.9 * 48 / 300 = 0.856``. The ids are registered with ``max_episode_steps=300``
    (truncation) and ``reward_threshold=0.7`` (``envs/README.md`` says why).

    Args:
        tv: which TV plays: ``"none"``, ``"action"`` or ``"place"``.
        tv_dims: number of TV dims in the observation.
        max_steps: the episode's step limit that the reward's time discount divides by; the
            registered ids truncate at the same step.
        unit_interval: report every value in [0, 1] instead of [-1, 1] (``(value + 1) / 2``), as
            many environments do: the same task, for checking that a bonus does not depend on how
            its observations are scaled.
        render_mode: ``"ansi"`` renders the room as text, the agent drawn ``A``;
            other modes render nothing (SB3 asks for ``"rgb_array"``).
    """

    def __init__(
        self,
        tv: TVKind = "none",
        tv_dims: int = 8,
        max_steps: int = OPEN_ROOM_STEPS,
        unit_interval: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 (the reward divides the goal's step by it), got {max_steps}")
        super().__init__(Layout.from_art(OPEN_ROOM_ART), tv, tv_dims, render_mode)
        self.max_steps = max_steps
        self.unit_interval = unit_interval
        if unit_interval:
            self.observation_space = spaces.Box(0.0, 1.0, shape=self.observation_space.shape, dtype=np.float32)

    def _observation(self, on_tv: bool) -> np.ndarray:
        observation = super()._observation(on_tv)
        return (observation + 1.0) / 2.0 if self.unit_interval else observation

    def goal_reward(self) -> float:
        # later arrivals earn less, down to 0.1 on the last step; never below, for an agent that
        # is allowed more steps than max_steps
        return 1.0 - 0.9 * min(self.steps, self.max_steps) / self.max_steps


ROOM_IMAGE_PIXELS = 36
"""Side of the pixel room's image: the room's 25 x 25 floor at one pixel a cell, the TV's patch beside it."""

TV_PATCH_PIXELS = 10
"""Side of the square patch of the image in which the pixel room's TV shows noise."""


class OpenRoomPixelsEnv(OpenRoomEnv):
    """The open room seen as a picture, whose TV is a patch of noise on the screen.

    The rules are :class:`OpenRoomEnv`'s (same room, goal, reward, actions, TV and ``on_tv`` info);
    only the observation differs: a noisy TV of the literature is an image, not a few numbers.

    Observation: uint8 image of shape (36, 36, 1): the floor cell in row r, column c of the room is
    pixel (r, c), black, the goal grey (128) and the agent white (255); the walls are not drawn. The
    10 x 10 patch in the bottom-right corner is black while the TV is off and shows fresh uniform
    grey levels in [0, 255] on every step it plays (100 noise values).

    Args:
        tv: which TV plays: ``"none"``, ``"action"`` or ``"place"``.
        max_steps: the episode's step limit that the reward's time discount divides by.
        render_mode: ``"ansi"`` renders the room as text; ``"rgb_array"`` returns the observation
            as an RGB image.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}  # noqa: RUF012

    def __init__(self, tv: TVKind = "action", max_steps: int = OPEN_ROOM_STEPS, render_mode: str | None = None) -> None:
        super().__init__(tv, TV_PATCH_PIXELS**2, max_steps, render_mode=render_mode)
        self.observation_space = spaces.Box(0, 255, shape=(ROOM_IMAGE_PIXELS, ROOM_IMAGE_PIXELS, 1), dtype=np.uint8)

    def _observation(self, on_tv: bool) -> np.ndarray:
        image = np.zeros((ROOM_IMAGE_PIXELS, ROOM_IMAGE_PIXELS, 1), dtype=np.uint8)
        goal_row, goal_col = self.layout.goal
        image[goal_row - 1, goal_col - 1] = 128
        image[self._cell[0] - 1, self._cell[1] - 1] = 255
        if on_tv:
            patch = self.np_random.integers(0, 256, size=(TV_PATCH_PIXELS, TV_PATCH_PIXELS, 1), dtype=np.uint8)
            image[-TV_PATCH_PIXELS:, -TV_PATCH_PIXELS:] = patch
        return image

    def render(self) -> Any:  # a str for "ansi", an array for "rgb_array"
        if self.render_mode == "rgb_array":
            return np.repeat(self._observation(on_tv=False), 3, axis=-1)
        return super().render()
