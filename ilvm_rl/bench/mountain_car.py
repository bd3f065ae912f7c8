"""How many steps a MountainCar-v0 policy wastes, start by start.

An episode of MountainCar-v0 starts at rest, at a position drawn from [-0.6, -0.4]. For a grid of
such starts, :func:`fewest_steps` finds the fewest steps to the flag by a breadth-first search over
full pushes left and right (time-optimal control of the car is bang-bang, so idling never shortens
a path), with states that round to the same cell of a 1e-3 × 1e-4 grid merged so the frontier stays
small; :func:`policy_steps` runs the arg-max policy of a run folder from the same start. The
difference is what the policy leaves on the table where, not on average::

    python -m ilvm_rl.bench.mountain_car runs/bench/exploration/runs/MountainCar-v0__*
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.mountain_car import MountainCarEnv

from ilvm_rl.config import ConfigError
from ilvm_rl.run import MODEL_FILE, load_agent, observation_wrapper, read_run_spec

ENV_ID = "MountainCar-v0"
STARTS = np.round(np.linspace(-0.6, -0.4, 21), 2)
CELL = (1e-3, 1e-4)
"""Position and velocity resolution at which search states are merged."""


def _step(
    car: MountainCarEnv, position: np.ndarray, velocity: np.ndarray, push: float
) -> tuple[np.ndarray, np.ndarray]:
    """The env's own dynamics on arrays of states (``push``: -1 left, +1 right)."""
    velocity = np.clip(velocity + push * car.force - car.gravity * np.cos(3 * position), -car.max_speed, car.max_speed)
    position = np.clip(position + velocity, car.min_position, car.max_position)
    return position, np.where((position == car.min_position) & (velocity < 0), 0.0, velocity)


def fewest_steps(start: float) -> int:
    """Fewest steps from rest at ``start`` to the flag (the episode's limit if none is found)."""
    car, limit = MountainCarEnv(), gym.spec(ENV_ID).max_episode_steps or 200
    position, velocity = np.array([start]), np.array([0.0])
    for step in range(1, limit + 1):
        moved = [_step(car, position, velocity, push) for push in (-1.0, 1.0)]
        position = np.concatenate([p for p, _ in moved])
        velocity = np.concatenate([v for _, v in moved])
        if np.any((position >= car.goal_position) & (velocity >= car.goal_velocity)):
            return step
        cells = np.round(position / CELL[0]).astype(np.int64) * 10**6 + np.round(velocity / CELL[1]).astype(np.int64)
        _, first = np.unique(cells, return_index=True)
        position, velocity = position[first], velocity[first]
    return limit


def policy_steps(act: Callable[[np.ndarray], int], start: float, env: gym.Env) -> int:
    """Steps ``act`` (observation → action) takes from rest at ``start`` in ``env`` (MountainCar-v0,
    possibly behind an observation wrapper), the episode's limit included."""
    env.reset(seed=0)
    state = np.array([start, 0.0])
    env.unwrapped.state = state  # type: ignore[attr-defined]
    observation = env.observation(state.astype(np.float32)) if isinstance(env, gym.ObservationWrapper) else state
    steps = 0
    while True:
        observation, _, terminated, truncated, _ = env.step(act(observation))
        steps += 1
        if terminated or truncated:
            return steps


def wasted_steps(run_dir: Path, fewest: Sequence[int]) -> list[int]:
    """Steps the run's arg-max policy takes beyond ``fewest``, one per start of :data:`STARTS`."""
    spec, recipe = read_run_spec(run_dir)
    if spec.env_id != ENV_ID:
        raise ConfigError(f"{run_dir}: a run of {spec.env_id}, not {ENV_ID}")
    agent = load_agent(run_dir / MODEL_FILE, spec.env_id, recipe, spec.seed)
    wrapper = observation_wrapper(ENV_ID, recipe)
    env = gym.make(ENV_ID)
    env = wrapper(env) if wrapper else env

    def act(observation: np.ndarray) -> int:
        return int(agent.predict(observation, deterministic=True)[0])

    return [policy_steps(act, start, env) - best for start, best in zip(STARTS, fewest, strict=True)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run folders of MountainCar-v0")
    args = parser.parse_args(argv)
    for run_dir in args.run_dirs:
        if not (run_dir / MODEL_FILE).is_file():
            parser.error(f"{run_dir}: no {MODEL_FILE} (not a finished run folder)")
    fewest = [fewest_steps(start) for start in STARTS]
    print("| run | mean steps | " + " | ".join(f"{start:.2f}" for start in STARTS) + " |")
    print("| --- " * (len(STARTS) + 2) + "|")
    print(f"| fewest | {np.mean(fewest):.1f} | " + " | ".join(map(str, fewest)) + " |")
    for run_dir in args.run_dirs:
        extra = wasted_steps(run_dir, fewest)
        mean = np.mean(fewest) + np.mean(extra)
        print(f"| {run_dir.name} | {mean:.1f} | " + " | ".join(f"+{n}" for n in extra) + " |")


if __name__ == "__main__":
    main()
