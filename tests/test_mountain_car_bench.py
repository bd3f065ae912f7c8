"""The fewest steps to MountainCar's flag, against paths played in the env itself."""

import gymnasium as gym

from ilvm_rl.bench.mountain_car import fewest_steps, policy_steps

LEFT, RIGHT = 0, 2


def pushes(*runs: tuple[int, int]):
    """An open-loop policy: each (action, count) in turn, then the last action for good."""
    plan = [action for action, count in runs for _ in range(count)]
    taken = []

    def act(observation):
        taken.append(observation)
        return plan[min(len(taken), len(plan)) - 1]

    return act


def pump(observation) -> int:
    """Push the way the car moves (right when at rest)."""
    return LEFT if observation[1] < 0 else RIGHT


def test_the_search_finds_a_path_the_env_plays_and_it_beats_pumping() -> None:
    env = gym.make("MountainCar-v0")
    # from -0.6: a short push right, a long one left, then right to the flag
    assert policy_steps(pushes((RIGHT, 14), (LEFT, 40), (RIGHT, 50)), -0.6, env) == 104
    assert fewest_steps(-0.6) == 104
    assert policy_steps(pump, -0.6, env) == 113
