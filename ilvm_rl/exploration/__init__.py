"""Exploration module: replay, intrinsic-reward models (ILVM, RND) and reward scaling."""

from ilvm_rl.exploration.explorer import ExplorationConfig, Explorer

__all__ = ["ExplorationConfig", "Explorer"]
