"""MiniGrid's DoorKey-8x8 with the agent's view as a flat float vector: ``ilvm/DoorKey8x8-v0``.

MiniGrid is an optional extra (``pip install "ilvm-rl[minigrid]"``); it is imported only when the
environment is made, so registering the id costs nothing without it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled

DOORKEY_SIZE = 8
"""Side of the DoorKey grid, outer walls included (MiniGrid-DoorKey-8x8-v0)."""

DOORKEY_STEPS = 10 * DOORKEY_SIZE**2
"""MiniGrid's own step limit for DoorKey (10 · size²), which its reward's time discount divides by."""


def import_minigrid() -> Any:
    """The ``minigrid`` package, or an error that names the extra that installs it."""
    try:
        import minigrid
    except ImportError as error:
        raise DependencyNotInstalled(
            'ilvm/DoorKey8x8-v0 needs MiniGrid: pip install "ilvm-rl[minigrid]" (or pip install "minigrid>=2.3")'
        ) from error
    return minigrid


class FlatViewWrapper(gym.ObservationWrapper[np.ndarray, Any, dict[str, Any]]):
    """A MiniGrid env's partial view and direction as one float vector, for MLP policies.

    MiniGrid observes a dict: ``image``, the agent's view of shape (view, view, 3) uint8 holding
    each cell's (object, colour, state) indices, ``direction`` (0-3) and a ``mission`` string. This
    wrapper one-hot encodes the three indices of every cell and the direction and drops the mission
    (constant within a task). The encoding is MiniGrid's ``OneHotPartialObsWrapper`` flattened, done
    with one indexed write instead of a Python loop over cells.

    Observation: float32 vector of shape (view · view · (objects + colours + states) + 4,) in
    [0, 1]: for DoorKey's 7 x 7 view, 7 · 7 · (11 + 6 + 3) + 4 = 984 values, cells in row-major
    order of MiniGrid's image (column, row), each cell's object one-hot, then colour, then state;
    the last 4 the direction one-hot.

    Args:
        env: a MiniGrid environment (its observation space a dict with ``image`` and ``direction``).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        import_minigrid()
        from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

        space = env.observation_space
        shape = space["image"].shape if isinstance(space, spaces.Dict) and "image" in space.spaces else None
        if shape is None or len(shape) != 3 or shape[2] != 3:
            raise ValueError(
                f"FlatViewWrapper needs a MiniGrid observation space: a Dict with an 'image' of shape "
                f"(view, view, 3); got {space}"
            )
        channels = (len(OBJECT_TO_IDX), len(COLOR_TO_IDX), len(STATE_TO_IDX))
        bits = sum(channels)
        cells = shape[0] * shape[1]
        # where each (cell, channel) index starts in the flat vector: cell · bits + channel offset
        channel_start = np.cumsum((0, *channels[:-1]))
        self._offsets = (np.arange(cells)[:, None] * bits + channel_start[None, :]).reshape(shape)
        self._direction_start = cells * bits
        self._size = cells * bits + 4
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self._size,), dtype=np.float32)

    def observation(self, observation: dict[str, Any]) -> np.ndarray:
        """One-hot view and direction of shape (view · view · bits + 4,)."""
        flat = np.zeros(self._size, dtype=np.float32)
        flat[(observation["image"].astype(np.intp) + self._offsets).ravel()] = 1.0
        flat[self._direction_start + int(observation["direction"])] = 1.0
        return flat


def doorkey_8x8(render_mode: str | None = None) -> gym.Env:
    """``MiniGrid-DoorKey-8x8-v0`` (MiniGrid's reward and step limit) seen through :class:`FlatViewWrapper`.

    Pick up the key, unlock the door in the wall that splits the room, reach the goal square; the
    layout is drawn anew every episode. Reward ``1 - 0.9 · steps / 640`` on reaching the goal
    (terminated), 0 otherwise; MiniGrid truncates at 640 steps. Actions: Discrete(7), MiniGrid's
    (turn left, turn right, forward, pick up, drop, toggle, done).

    Raises:
        gymnasium.error.DependencyNotInstalled: MiniGrid is not installed; the message names the extra.
    """
    import_minigrid()
    from minigrid.envs import DoorKeyEnv

    return FlatViewWrapper(DoorKeyEnv(size=DOORKEY_SIZE, max_steps=DOORKEY_STEPS, render_mode=render_mode))


DONE_ACTION = 6
"""MiniGrid's ``done`` action, a no-op in DoorKey: the noisy DoorKey's TV."""


class NoisyViewWrapper(gym.Wrapper[dict[str, Any], Any, dict[str, Any], Any]):
    """MiniGrid's ``done`` action fills the agent's view with random cells for that step: a noisy TV
    that a partly observed, categorical view shows (the noisy-TV MiniGrid of the aleatoric-mapping
    work).

    Every cell of the view gets an object, colour and state index drawn uniformly from MiniGrid's
    tables; nothing else changes (``done`` moves nothing in DoorKey). The noise comes from a
    generator of the wrapper's own, seeded at each seeded reset, so the layouts MiniGrid draws stay
    those of the plain task. Info: ``on_tv``, whether the view showed noise on this step.

    Args:
        env: a MiniGrid environment that observes a dict with an ``image`` of cell indices.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        import_minigrid()
        from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

        self._index_bounds = np.array([len(OBJECT_TO_IDX), len(COLOR_TO_IDX), len(STATE_TO_IDX)])
        self._noise = np.random.default_rng()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        if seed is not None:
            self._noise = np.random.default_rng(seed)
        observation, info = self.env.reset(seed=seed, options=options)
        return observation, {**info, "on_tv": False}

    def step(self, action: Any) -> tuple[dict[str, Any], Any, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        on_tv = int(action) == DONE_ACTION
        if on_tv:
            image = observation["image"]
            noise = self._noise.integers(0, self._index_bounds, size=image.shape).astype(image.dtype)
            observation = {**observation, "image": noise}
        return observation, reward, terminated, truncated, {**info, "on_tv": on_tv}


def doorkey_tv_8x8(render_mode: str | None = None) -> gym.Env:
    """:func:`doorkey_8x8` whose ``done`` action fills the view with random cells (:class:`NoisyViewWrapper`).

    Raises:
        gymnasium.error.DependencyNotInstalled: MiniGrid is not installed; the message names the extra.
    """
    import_minigrid()
    from minigrid.envs import DoorKeyEnv

    plain = DoorKeyEnv(size=DOORKEY_SIZE, max_steps=DOORKEY_STEPS, render_mode=render_mode)
    return FlatViewWrapper(NoisyViewWrapper(plain))
