"""Stable-Baselines3 integration: a callback for on-policy agents, a replay buffer for off-policy ones."""

from ilvm_rl.sb3.callback import ExplorationCallback, with_exploration
from ilvm_rl.sb3.replay import (
    ExplorationDictReplayBuffer,
    ExplorationReplayBuffer,
    ReplayExplorationCallback,
    exploration_replay_class,
)

__all__ = [
    "ExplorationCallback",
    "ExplorationDictReplayBuffer",
    "ExplorationReplayBuffer",
    "ReplayExplorationCallback",
    "exploration_replay_class",
    "with_exploration",
]
