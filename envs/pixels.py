"""A grid room seen as pixels: ``ilvm/PixelRoom-v0``, the image-observation task of the representation module."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from .layout import GridEnv, Layout

IMAGE_PIXELS = 36
"""Side of the image: the smallest SB3's NatureCNN reads."""

GOAL, AGENT = 128, 255
"""Grey levels of the goal and the agent (the floor is black)."""


def room_art(size: int) -> str:
    """A square room of ``size`` x ``size`` floor cells (its ``S`` and ``G`` are not used: each episode
    draws both)."""
    floor = ["#" + "." * size + "#" for _ in range(size)]
    floor[0] = "#S" + floor[0][2:]
    floor[-1] = floor[-1][:-2] + "G#"
    return "\n".join(["#" * (size + 2), *floor, "#" * (size + 2)])


class PixelRoomEnv(GridEnv):
    """Collect goals in a small room seen only as a grey-scale image.

    Every episode draws the agent's cell and the goal's cell uniformly at random (never the same);
    each time the agent steps onto the goal it scores and a new goal appears on another cell drawn at
    random. The policy has to read both positions from the pixels and relate them: no fixed action
    sequence and no fixed direction works. A uniformly random policy collects 1.5 goals an episode;
    always moving straight towards the goal collects 18.5.

    Observation: uint8 image of shape (36, 36, 1) (height, width, channel; SB3 moves the channel
    first): the floor black, the goal's cell grey (128), the agent's cell white (255); each cell is a
    square block of ``36 / size`` pixels and the walls are not drawn.

    Actions: Discrete(4): 0 up, 1 right, 2 down, 3 left; a move into a wall stays put.

    Reward: +1 on each step that reaches the goal; 0 otherwise. Episodes never terminate: the id is
    registered with ``max_episode_steps=50`` (truncation), so every episode is 50 steps long and
    training returns are not biased towards lucky short episodes, and with ``reward_threshold=10``:
    the last 10 training episodes collect at least 10 goals on average.

    Args:
        size: floor cells per side; must divide 36.
        render_mode: ``"ansi"`` renders the room as text, the agent drawn ``A``; ``"rgb_array"``
            returns the observation as an RGB image.
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}  # noqa: RUF012

    def __init__(self, size: int = 4, render_mode: str | None = None) -> None:
        if size < 2 or IMAGE_PIXELS % size:
            raise ValueError(
                f"size must be at least 2 and divide {IMAGE_PIXELS} (square cells fill the image), got {size}"
            )
        super().__init__(Layout.from_art(room_art(size)), render_mode)
        self.cell_pixels = IMAGE_PIXELS // size
        self.observation_space = spaces.Box(0, 255, shape=(IMAGE_PIXELS, IMAGE_PIXELS, 1), dtype=np.uint8)
        self.action_space = spaces.Discrete(4)
        self._cells = [(int(r), int(c)) for r, c in np.argwhere(~self.layout.walls)]
        self._goal = self.layout.goal

    def _paint(self, image: np.ndarray, cell: tuple[int, int], level: int) -> None:
        row, col, side = (cell[0] - 1) * self.cell_pixels, (cell[1] - 1) * self.cell_pixels, self.cell_pixels
        image[row : row + side, col : col + side] = level

    def _observation(self) -> np.ndarray:
        image = np.zeros((IMAGE_PIXELS, IMAGE_PIXELS, 1), dtype=np.uint8)
        self._paint(image, self._goal, GOAL)
        self._paint(image, self._cell, AGENT)
        return image

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._restart(seed)
        start, goal = self.np_random.choice(len(self._cells), size=2, replace=False)
        self._cell, self._goal = self._cells[int(start)], self._cells[int(goal)]
        return self._observation(), {}

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._cell = self.layout.move(self._cell, self._checked(action))
        reward = 0.0
        if self._cell == self._goal:
            reward = 1.0
            others = [cell for cell in self._cells if cell != self._cell]
            self._goal = others[int(self.np_random.integers(len(others)))]
        return self._observation(), reward, False, False, {}

    def render(self) -> Any:  # a str for "ansi", an array for "rgb_array"
        if self.render_mode == "rgb_array":
            return np.repeat(self._observation(), 3, axis=-1)
        return super().render()
