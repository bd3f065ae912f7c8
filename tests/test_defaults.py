"""Defaults are the benchmarked recipe: ``ExplorationConfig()`` is what ``ppo_ilvm`` ships, and a
settings file's left-out keys take the same defaults as Python."""

import dataclasses

import pytest

from ilvm_rl.config import ConfigError, from_dict
from ilvm_rl.exploration.bonus import DisagreementConfig
from ilvm_rl.exploration.explorer import ExplorationConfig
from ilvm_rl.exploration.rnd import RNDConfig
from ilvm_rl.model.ilvm import ModelConfig

# Still the older defaults: ppo_rnd, ppo_ilvm_full, dqn_ilvm, dqn_rnd and sac_ilvm leave these keys
# out and were benchmarked with these values; they follow ppo_ilvm once those recipes write them.
OLDER_DEFAULTS = {"int_coef_final": None, "int_coef_final_at": 1.0, "handover": False}


def test_the_exploration_defaults_are_the_ppo_ilvm_recipe() -> None:
    # no section of ppo_ilvm, nor of the ppo it extends, names CartPole-v1: the recipe's default
    shipped = ExplorationConfig.from_recipe("ppo_ilvm", "CartPole-v1")
    assert dataclasses.replace(shipped, **OLDER_DEFAULTS) == ExplorationConfig()
    assert ExplorationConfig().bonus == DisagreementConfig(samples=16, target="next_obs")


def test_a_recipe_section_gives_its_environment_its_settings() -> None:
    assert ExplorationConfig.from_recipe("ppo_rnd", "MountainCar-v0").bonus == RNDConfig()
    with pytest.raises(ConfigError, match="recipe ppo has no exploration section for CartPole-v1"):
        ExplorationConfig.from_recipe("ppo", "CartPole-v1")
    with pytest.raises(ConfigError, match="unknown environment id 'CartPole-v9'"):
        ExplorationConfig.from_recipe("ppo_ilvm", "CartPole-v9")


def test_keys_a_settings_file_leaves_out_take_the_python_defaults() -> None:
    assert from_dict(ExplorationConfig, {"int_coef": 0.5}, "test") == ExplorationConfig(int_coef=0.5)
    partial_model = from_dict(ExplorationConfig, {"model": {"latent_dim": 8}}, "test")
    assert partial_model.model == ModelConfig(objectives=("energy",), latent_dim=8)
    partial_bonus = from_dict(ExplorationConfig, {"bonus": "disagreement", "size": 3}, "test")
    assert partial_bonus.bonus == DisagreementConfig(size=3, samples=16, target="next_obs")
    assert from_dict(ExplorationConfig, {"bonus": "rnd"}, "test").bonus == RNDConfig()  # another bonus: its own
