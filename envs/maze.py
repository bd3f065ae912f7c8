"""A sparse-reward maze with vector observations: ``ilvm/Maze-v0``."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from .layout import MOVES, GridEnv, Layout

# a perfect maze (one route between any two cells) of 10 x 10 rooms, drawn once by a seeded
# depth-first search and fixed here so that the task never changes
MAZE_ART = """
    #####################
    #S#...#.......#.....#
    #.###.#.#.###.#####.#
    #.#...#.#...#.....#.#
    #.#.###.###.#####.#.#
    #.#...#.#.#.#...#.#.#
    #.#.#.#.#.#.###.#.#.#
    #.#.#.....#...#.#.#.#
    #.#.#########.#.#.#.#
    #.#.#...#...#.#.#.#.#
    #.#.#.#.#.#.#.#.#.#.#
    #.#.#.#...#.#.#...#.#
    #.#.#.#####.#.#.###.#
    #.#.#.#...#.#.#...#.#
    #.###.###.#.#.###.#.#
    #...#...#.#...#...#.#
    ###.#.#.#.#####.###.#
    #.#.#.#.#.....#.#...#
    #.#.###.#.###.#.###.#
    #.......#...#......G#
    #####################
"""
"""The maze: 199 floor cells, start ``S`` top left, goal ``G`` bottom right, 108 moves apart."""


class MazeEnv(GridEnv):
    """Find the way through a fixed 19 x 19 maze from its top-left to its bottom-right corner.

    The shortest route is 108 moves and winds through most of the maze; many corridors are dead ends,
    so finding it takes hundreds of steps of directed exploration. A uniformly random policy did not
    reach the goal in any of 10,000 episodes of 500 steps.

    Observation: float32 vector of shape (6,) in [-1, 1]: the agent's (x, y) scaled to [-1, 1] over
    the maze, then one wall sensor per direction (up, right, down, left), 1 where a wall is next to
    the agent and 0 where the way is open.

    Actions: Discrete(4): 0 up, 1 right, 2 down, 3 left; a move into a wall stays put.

    Reward: +1 on reaching the goal, which ends the episode (terminated); 0 on every other step.
    The id is registered with ``max_episode_steps=500`` (truncation) and ``reward_threshold=0.9``:
    solved when at least 9 of the last 10 episodes reach the goal.

    Info: ``depth`` (int), the fewest moves from the start to the agent's cell (the goal's is 108),
    so that a run can show how far into the maze its episodes got (``deepest`` in ``episodes.csv``).

    Args:
        render_mode: ``"ansi"`` renders the maze as text, the agent drawn ``A``;
            other modes render nothing (SB3 asks for ``"rgb_array"``).
    """

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(Layout.from_art(MAZE_ART), render_mode)
        rows, cols = self.layout.walls.shape
        # every cell's observation computed once: a step only looks one up
        self._observations = np.zeros((rows, cols, 6), dtype=np.float32)
        self._observations[..., :2] = self.layout.positions
        for row in range(1, rows - 1):
            for col in range(1, cols - 1):
                for direction, (d_row, d_col) in enumerate(MOVES):
                    self._observations[row, col, 2 + direction] = self.layout.walls[row + d_row, col + d_col]
        self._depths = self.layout.distances()
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(6,), dtype=np.float32)
        self.action_space = spaces.Discrete(4)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        self._restart(seed)
        return self._observations[self._cell].copy(), {"depth": 0}

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self._cell = self.layout.move(self._cell, self._checked(action))
        terminated = self._cell == self.layout.goal
        info = {"depth": self._depths[self._cell]}
        return self._observations[self._cell].copy(), float(terminated), terminated, False, info
