"""Exploration module: replay, intrinsic-reward models (ILVM, ensemble disagreement, RND, ICM) and reward scaling."""

from ilvm_rl.exploration.bonus import DisagreementConfig, ILVMScoreConfig
from ilvm_rl.exploration.explorer import ExplorationConfig, Explorer
from ilvm_rl.exploration.icm import ICMConfig
from ilvm_rl.exploration.rnd import RNDConfig

__all__ = ["DisagreementConfig", "ExplorationConfig", "Explorer", "ICMConfig", "ILVMScoreConfig", "RNDConfig"]
