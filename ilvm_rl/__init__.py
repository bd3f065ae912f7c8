"""ilvm-rl: implicit latent variable models as exploration bonus, world model and representation
for Stable-Baselines3 agents."""

from ilvm_rl.exploration import ExplorationConfig, Explorer
from ilvm_rl.model import ILVM, ModelConfig
from ilvm_rl.representation import ILVMFeaturesExtractor, RepresentationCallback, RepresentationConfig
from ilvm_rl.sb3 import (
    ExplorationCallback,
    ExplorationDictReplayBuffer,
    ExplorationReplayBuffer,
    ReplayExplorationCallback,
    with_exploration,
)

__version__ = "0.1.0"
__all__ = [
    "ILVM",
    "ExplorationCallback",
    "ExplorationConfig",
    "ExplorationDictReplayBuffer",
    "ExplorationReplayBuffer",
    "Explorer",
    "ILVMFeaturesExtractor",
    "ModelConfig",
    "ReplayExplorationCallback",
    "RepresentationCallback",
    "RepresentationConfig",
    "with_exploration",
]
