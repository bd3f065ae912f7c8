"""An open room whose goal lies far from the start, with a noisy TV or none: ``ilvm/OpenRoomNone-v0``,
``ilvm/OpenRoomAction-v0`` and ``ilvm/OpenRoomPlace-v0``."""

from __future__ import annotations

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
        render_mode: ``"ansi"`` renders the room as text, the agent drawn ``A``;
            other modes render nothing (SB3 asks for ``"rgb_array"``).
    """

    def __init__(
        self,
        tv: TVKind = "none",
        tv_dims: int = 8,
        max_steps: int = OPEN_ROOM_STEPS,
        render_mode: str | None = None,
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 (the reward divides the goal's step by it), got {max_steps}")
        super().__init__(Layout.from_art(OPEN_ROOM_ART), tv, tv_dims, render_mode)
        self.max_steps = max_steps

    def goal_reward(self) -> float:
        # later arrivals earn less, down to 0.1 on the last step; never below, for an agent that
        # is allowed more steps than max_steps
        return 1.0 - 0.9 * min(self.steps, self.max_steps) / self.max_steps
