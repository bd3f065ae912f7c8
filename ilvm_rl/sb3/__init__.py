"""Stable-Baselines3 integration."""

from ilvm_rl.sb3.callback import ExplorationCallback, with_exploration

__all__ = ["ExplorationCallback", "with_exploration"]
