"""Defaults are the benchmarked recipe: ``ExplorationConfig()`` is what ``ppo_ilvm`` ships, and a
settings file's left-out keys take the same defaults as Python."""

import pytest

from ilvm_rl.config import ConfigError, from_dict
from ilvm_rl.exploration.bonus import DisagreementConfig
from ilvm_rl.exploration.explorer import ExplorationConfig
from ilvm_rl.exploration.rnd import RNDConfig
from ilvm_rl.model.ilvm import ModelConfig


def test_the_exploration_defaults_are_the_ppo_ilvm_recipe() -> None:
    # no section of ppo_ilvm, nor of the ppo it extends, names CartPole-v1: the recipe's default
    assert ExplorationConfig.from_recipe("ppo_ilvm", "CartPole-v1") == ExplorationConfig()
    assert ExplorationConfig().bonus == DisagreementConfig(samples=16, target="next_obs")
    assert (ExplorationConfig().int_coef_final, ExplorationConfig().int_coef_final_at) == (0.0, 0.75)
    assert ExplorationConfig().handover


@pytest.mark.parametrize("recipe", ["ppo_ilvm_full", "dqn_ilvm", "dqn_rnd", "sac_ilvm"])
def test_the_recipes_benchmarked_with_beta_held_name_it(recipe: str) -> None:
    assert ExplorationConfig.from_recipe(recipe, "MountainCar-v0").int_coef_final is None


@pytest.mark.parametrize("recipe", ["ppo_rnd", "ppo_ilvm_full"])
def test_the_recipes_benchmarked_without_a_handover_name_it(recipe: str) -> None:
    assert not ExplorationConfig.from_recipe(recipe, "MountainCar-v0").handover


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
