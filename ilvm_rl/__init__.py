"""ilvm-rl: implicit latent variable models as exploration bonus, world model and representation
for Stable-Baselines3 agents."""

from ilvm_rl.exploration import (
    DisagreementConfig,
    ExplorationConfig,
    Explorer,
    ICMConfig,
    ILVMScoreConfig,
    RNDConfig,
)
from ilvm_rl.model import ILVM, ModelConfig
from ilvm_rl.representation import ILVMFeaturesExtractor, RepresentationCallback, RepresentationConfig
from ilvm_rl.sb3 import (
    ExplorationCallback,
    ExplorationDictReplayBuffer,
    ExplorationReplayBuffer,
    ReplayExplorationCallback,
    with_exploration,
)
from ilvm_rl.world_model import TrajectoryConfig, TrajectoryModel

__version__ = "0.1.0"
__all__ = [
    "ILVM",
    "DisagreementConfig",
    "ExplorationCallback",
    "ExplorationConfig",
    "ExplorationDictReplayBuffer",
    "ExplorationReplayBuffer",
    "Explorer",
    "ICMConfig",
    "ILVMFeaturesExtractor",
    "ILVMScoreConfig",
    "ModelConfig",
    "RNDConfig",
    "ReplayExplorationCallback",
    "RepresentationCallback",
    "RepresentationConfig",
    "TrajectoryConfig",
    "TrajectoryModel",
    "with_exploration",
]
