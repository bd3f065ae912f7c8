"""Grid layouts drawn as ASCII art, shared by the navigation and maze environments.

Characters: ``#`` wall, ``.`` floor, ``S`` start, ``G`` goal, ``T`` floor of a marked region (the
place TV of the navigation task). The art must be a rectangle enclosed by walls, so that a move never
leaves the grid.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

Cell = tuple[int, int]
"""(row, column) of a grid cell, row 0 at the top."""

MOVES: tuple[Cell, ...] = ((-1, 0), (0, 1), (1, 0), (0, -1))
"""(row, column) offset of each move action: 0 up, 1 right, 2 down, 3 left."""

ALLOWED_CHARACTERS = frozenset("#.SGT")


@dataclass(frozen=True, eq=False)
class Layout:
    """A grid parsed from ASCII art.

    Attributes:
        art: the art it was parsed from, one line per row.
        walls: bool array of shape (rows, cols), True on walls.
        start: the cell every episode starts in.
        goal: the cell that pays the reward and ends the episode.
        region: the cells drawn ``T``.
        positions: float32 array of shape (rows, cols, 2): each cell's (x, y), x from -1 (leftmost
            floor column) to 1 (rightmost), y from -1 (lowest floor row) to 1 (highest).
    """

    art: str
    walls: np.ndarray
    start: Cell
    goal: Cell
    region: frozenset[Cell]
    positions: np.ndarray

    @classmethod
    def from_art(cls, art: str) -> Layout:
        """Parse ``art`` (leading indentation and blank first/last lines are ignored).

        Raises:
            ValueError: if the art is not a wall-enclosed rectangle with one ``S`` and one ``G``, or
                uses other characters than ``#.SGT``.
        """
        lines = textwrap.dedent(art).strip("\n").splitlines()
        if len(lines) < 3 or len({len(line) for line in lines}) != 1 or len(lines[0]) < 3:
            raise ValueError("layout art must be a rectangle of at least 3 x 3 characters")
        grid = np.array([list(line) for line in lines])
        unknown = set(np.unique(grid)) - ALLOWED_CHARACTERS
        if unknown:
            raise ValueError(f"layout art uses {sorted(unknown)}; allowed are {sorted(ALLOWED_CHARACTERS)}")
        border = np.concatenate([grid[0], grid[-1], grid[:, 0], grid[:, -1]])
        if (border != "#").any():
            raise ValueError("layout art must be enclosed by walls ('#'), so that no move leaves the grid")
        cells = {}
        for marker in "SG":
            found = np.argwhere(grid == marker)
            if len(found) != 1:
                raise ValueError(f"layout art needs exactly one {marker!r}, found {len(found)}")
            cells[marker] = (int(found[0][0]), int(found[0][1]))
        rows, cols = grid.shape
        # floor spans rows and columns 1 .. n-2; scale that span to [-1, 1]
        x = np.linspace(-1.0, 1.0, cols - 2)
        y = np.linspace(1.0, -1.0, rows - 2)
        positions = np.zeros((rows, cols, 2), dtype=np.float32)
        positions[1:-1, 1:-1, 0] = x[None, :]
        positions[1:-1, 1:-1, 1] = y[:, None]
        return cls(
            art="\n".join(lines),
            walls=grid == "#",
            start=cells["S"],
            goal=cells["G"],
            region=frozenset((int(r), int(c)) for r, c in np.argwhere(grid == "T")),
            positions=positions,
        )

    def move(self, cell: Cell, action: int) -> Cell:
        """The cell reached from ``cell`` by move ``action`` (0 up, 1 right, 2 down, 3 left); a move
        into a wall stays put."""
        d_row, d_col = MOVES[action]
        target = (cell[0] + d_row, cell[1] + d_col)
        return cell if self.walls[target] else target

    def distances(self) -> dict[Cell, int]:
        """Fewest moves from the start to each reachable cell (breadth-first search)."""
        distances = {self.start: 0}
        frontier = [self.start]
        while frontier:
            reached = []
            for cell in frontier:
                for action in range(len(MOVES)):
                    target = self.move(cell, action)
                    if target not in distances:
                        distances[target] = distances[cell] + 1
                        reached.append(target)
            frontier = reached
        return distances

    def render(self, cell: Cell) -> str:
        """The art with the agent drawn as ``A`` on ``cell``."""
        lines = self.art.splitlines()
        row, col = cell
        lines[row] = lines[row][:col] + "A" + lines[row][col + 1 :]
        return "\n".join(lines)


class GridEnv(gym.Env[np.ndarray, np.int64]):
    """What the grid tasks share: a layout, the agent's cell, the start on reset, checked actions and
    an ``ansi`` render. Subclasses build their spaces and define ``reset`` and ``step`` on top.

    Args:
        layout: the grid.
        render_mode: ``"ansi"`` renders the grid as text, the agent drawn ``A``; other modes render
            nothing (SB3 asks for ``"rgb_array"``).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012  (Gymnasium's API)
    action_space: spaces.Discrete

    def __init__(self, layout: Layout, render_mode: str | None = None) -> None:
        self.layout = layout
        self.render_mode = render_mode
        self._cell = layout.start

    @property
    def cell(self) -> Cell:
        """The agent's (row, column) in the layout's art."""
        return self._cell

    def _restart(self, seed: int | None) -> None:
        super().reset(seed=seed)
        self._cell = self.layout.start

    def _checked(self, action: np.int64 | int) -> int:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.action_space.n}), got {action!r}")
        return int(action)

    def render(self) -> str | None:
        return self.layout.render(self._cell) if self.render_mode == "ansi" else None
