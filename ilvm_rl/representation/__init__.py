"""Representation module: the ILVM state model's posterior mean as the policy's features."""

from ilvm_rl.representation.extractor import (
    ILVMFeaturesExtractor,
    RepresentationCallback,
    load_pretrained,
    representation_policy_kwargs,
)
from ilvm_rl.representation.pretrain import pretrain
from ilvm_rl.representation.state_model import RepresentationConfig, StateModel

__all__ = [
    "ILVMFeaturesExtractor",
    "RepresentationCallback",
    "RepresentationConfig",
    "StateModel",
    "load_pretrained",
    "pretrain",
    "representation_policy_kwargs",
]
