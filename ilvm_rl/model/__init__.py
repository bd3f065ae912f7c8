"""The implicit latent variable model, free of any RL library."""

from ilvm_rl.model.ilvm import ILVM, ModelConfig, ModelLoss, energy_score, excess_error

__all__ = ["ILVM", "ModelConfig", "ModelLoss", "energy_score", "excess_error"]
