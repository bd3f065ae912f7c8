"""ilvm-rl: implicit latent variable models for exploration in Stable-Baselines3 agents."""

from ilvm_rl.exploration import ExplorationConfig, Explorer
from ilvm_rl.model import ILVM, ModelConfig
from ilvm_rl.sb3 import ExplorationCallback, with_exploration

__version__ = "0.1.0"
__all__ = ["ILVM", "ExplorationCallback", "ExplorationConfig", "Explorer", "ModelConfig", "with_exploration"]
