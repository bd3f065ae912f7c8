"""Bad recipes, env ids and spaces fail at once with an error naming what is at fault."""

import dataclasses
from pathlib import Path

import pytest
from gymnasium import spaces

from ilvm_rl import ExplorationConfig, Explorer
from ilvm_rl.cli import main, parse_overrides
from ilvm_rl.config import ConfigError, from_dict, to_dict
from ilvm_rl.data.spaces import UnsupportedSpaceError
from ilvm_rl.exploration import DisagreementConfig, ICMConfig, ILVMScoreConfig, RNDConfig
from ilvm_rl.model import ModelConfig
from ilvm_rl.recipes import load_recipe, recipe_names


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return str(path)


def test_shipped_recipes_resolve_with_the_same_ppo_settings() -> None:
    assert {"ppo", "ppo_rnd", "ppo_ilvm"} <= set(recipe_names())
    resolved = {name: load_recipe(name, "MountainCar-v0")[0] for name in ("ppo", "ppo_rnd", "ppo_ilvm")}
    assert resolved["ppo"].exploration is None
    assert isinstance(resolved["ppo_rnd"].exploration.bonus, RNDConfig)
    assert resolved["ppo_ilvm"].exploration.bonus == DisagreementConfig(samples=16, target="next_obs")
    # each bonus agent hands over or not as its trials chose (docs: design, reward streams)
    assert resolved["ppo_ilvm"].exploration.handover and not resolved["ppo_rnd"].exploration.handover
    assert load_recipe("ppo_icm", "MountainCar-v0")[0].exploration.handover
    assert len({(r.algo_kwargs.__repr__(), r.n_envs, r.normalize_obs) for r in resolved.values()}) == 1


def test_the_recipes_command_says_what_each_shipped_recipe_is(capsys) -> None:
    main(["recipes"])
    lines = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert sorted(lines) == recipe_names()
    assert lines["ppo"] == "PPO without an exploration bonus"
    assert lines["ppo_ilvm"] == "PPO with the ILVM exploration bonus"
    assert lines["ppo_ilvm_repr_frozen"] == "ppo_ilvm_repr with the pretrained state model frozen"


def test_unknown_key_names_the_file_section_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "extends: ppo\ndefault:\n  exploration:\n    coeff: 2.0\n")
    with pytest.raises(ConfigError, match=r"recipe\.yaml: default\.exploration: unknown key 'coeff'"):
        load_recipe(path, "MountainCar-v0")


def test_a_key_of_another_bonus_is_refused_naming_the_file_section_and_bonus(tmp_path: Path) -> None:
    path = write(tmp_path, "default:\n  exploration: {bonus: rnd, output_dim: 32, samples: 16}\n")
    with pytest.raises(
        ConfigError,
        match=r"recipe\.yaml: default\.exploration: key 'samples' belongs to bonus 'disagreement', not 'rnd'; "
        r"bonus 'rnd' reads output_dim",
    ):
        load_recipe(path, "CartPole-v1")
    path = write(tmp_path, "default:\n  exploration: {bonus: curiosity}\n")
    with pytest.raises(ConfigError, match=r"default\.exploration\.bonus: expected 'ilvm' or 'disagreement' or 'rnd'"):
        load_recipe(path, "CartPole-v1")
    path = write(tmp_path, "default:\n  exploration: {bonus: icm, forward_weight: 1.5}\n")
    with pytest.raises(ConfigError, match=r"default\.exploration: forward_weight must lie in \(0, 1\)"):
        load_recipe(path, "CartPole-v1")


def test_a_section_that_names_another_bonus_drops_the_keys_of_the_bonus_below(tmp_path: Path) -> None:
    path = write(tmp_path, "extends: ppo_ilvm\ndefault:\n  exploration: {bonus: rnd, output_dim: 32}\n")
    exploration = load_recipe(path, "CartPole-v1")[0].exploration
    assert exploration.bonus == RNDConfig(output_dim=32)  # the ensemble's samples and target are gone
    assert exploration.int_coef_final_at == load_recipe("ppo_ilvm", "CartPole-v1")[0].exploration.int_coef_final_at
    switched = load_recipe("ppo_ilvm", "CartPole-v1", {"exploration": {"bonus": "icm"}})[0].exploration
    assert switched.bonus == ICMConfig()
    kept = load_recipe("ppo_ilvm", "CartPole-v1", {"exploration": {"bonus": "disagreement", "size": 3}})[0]
    assert kept.exploration.bonus == DisagreementConfig(size=3, samples=16, target="next_obs")


@pytest.mark.parametrize(
    "bonus",
    [ILVMScoreConfig(score="excess_error", target="next_obs"), DisagreementConfig(size=3), RNDConfig(8), ICMConfig(4)],
    ids=["ilvm", "disagreement", "rnd", "icm"],
)
def test_each_bonus_is_written_flat_beside_its_name_and_read_back(bonus) -> None:
    config = ExplorationConfig(bonus=bonus, int_coef=0.5, model=ModelConfig(objectives=("energy",)))
    plain = to_dict(config)
    own = {field.name for field in dataclasses.fields(bonus)}
    assert list(plain)[: 1 + len(own)] == ["bonus", *(f.name for f in dataclasses.fields(bonus))]
    assert from_dict(ExplorationConfig, plain, "x") == config
    # a section without a bonus gets the default one, the ppo_ilvm recipe's (tests/test_defaults.py)
    assert from_dict(ExplorationConfig, {}, "x") == ExplorationConfig()


def test_wrong_type_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, "default:\n  n_envs: four\n")
    with pytest.raises(ConfigError, match=r"default\.n_envs: expected int, got 'four'"):
        load_recipe(path, "CartPole-v1")
    path = write(tmp_path, "CartPole-v1:\n  exploration: {model: {objectives: [gan]}}\n")
    with pytest.raises(ConfigError, match=r"CartPole-v1\.exploration\.model\.objectives\[0\]"):
        load_recipe(path, "CartPole-v1")


def test_unknown_algorithm_argument_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "default:\n  algo_kwargs: {n_step: 8}\n")
    with pytest.raises(ConfigError, match="'n_step' is not an argument of ppo"):
        load_recipe(path, "CartPole-v1")


def test_unknown_agent_and_env_id_suggest_close_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown agent 'ppo_ilv'.*ppo_ilvm"):
        load_recipe("ppo_ilv", "CartPole-v1")
    with pytest.raises(ConfigError, match=r"unknown environment id 'MountainCar-v9'.*MountainCar-v0"):
        load_recipe("ppo", "MountainCar-v9")


def test_a_score_the_objectives_cannot_give_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"latent_surprise.*posterior"):
        from_dict(
            ExplorationConfig, {"bonus": "ilvm", "score": "latent_surprise", "model": {"objectives": ["energy"]}}, "x"
        )


@pytest.mark.parametrize(
    "space",
    [spaces.Box(0, 1, (4, 4)), spaces.Dict({"a": spaces.Box(0, 1, (2,)), "b": spaces.Discrete(3)}), spaces.Discrete(4)],
)
def test_unsupported_observation_spaces_are_named(space: spaces.Space) -> None:
    with pytest.raises(UnsupportedSpaceError, match=r"observation space .* is not supported"):
        Explorer(ExplorationConfig(), space, spaces.Discrete(2), n_envs=1)


def test_unsupported_action_space_is_named() -> None:
    with pytest.raises(UnsupportedSpaceError, match=r"action space .* is not supported"):
        Explorer(ExplorationConfig(), spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (2, 2)), n_envs=1)


def test_numbers_in_scientific_notation_are_numbers(tmp_path: Path) -> None:
    # PyYAML reads 1e-4 as a string (YAML 1.1 wants 1.0e-4); recipes and --set read it as YAML 1.2 does
    path = write(tmp_path, "default:\n  algo_kwargs: {learning_rate: 3e-4}\n  exploration: {learning_rate: 1E-3}\n")
    recipe, _ = load_recipe(path, "CartPole-v1")
    assert recipe.algo_kwargs["learning_rate"] == 3e-4 and recipe.exploration.learning_rate == 1e-3
    assert parse_overrides(["algo_kwargs.learning_rate=1e-4", "n_envs=8"]) == {
        "algo_kwargs": {"learning_rate": 1e-4},
        "n_envs": 8,
    }


def test_an_algorithm_argument_of_the_wrong_type_is_named_before_anything_runs(tmp_path: Path) -> None:
    for text, message in (
        ("gamma: high", r"algo_kwargs\.gamma: expected float, got 'high'"),
        ("n_steps: 1e3", r"algo_kwargs\.n_steps: expected int, got 1000\.0"),
        ("clip_range: wide", r"algo_kwargs\.clip_range: expected float or schedule"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_recipe(write(tmp_path, f"default:\n  algo_kwargs: {{{text}}}\n"), "CartPole-v1")
    # what the algorithms take besides plain numbers: a (frequency, unit) pair, a string option
    load_recipe("dqn", "CartPole-v1", {"algo_kwargs": {"train_freq": [4, "episode"], "target_update_interval": 100}})
    load_recipe("sac", "Pendulum-v1", {"algo_kwargs": {"ent_coef": "auto_0.1"}})


def test_a_bonus_setting_needs_a_bonus_to_change() -> None:
    with pytest.raises(
        ConfigError, match=r"agent ppo has no exploration bonus to change .*\(ppo_disagreement, ppo_icm, ppo_ilvm, "
    ):
        load_recipe("ppo", "CartPole-v1", {"exploration": {"int_coef": 0.5}})
    with pytest.raises(ConfigError, match=r"pick an agent that has one \(dqn_ilvm, dqn_rnd\)"):  # of its own algorithm
        load_recipe("dqn", "MountainCar-v0", {"exploration": {"int_coef": 0.5}})
    recipe, _ = load_recipe("ppo", "CartPole-v1", {"exploration": {"bonus": "rnd", "int_coef": 0.5}})
    assert recipe.exploration is not None and recipe.exploration.int_coef == 0.5
    recipe, _ = load_recipe("ppo_ilvm", "CartPole-v1", {"exploration": {"int_coef": 0.5}})
    assert recipe.exploration is not None and recipe.exploration.int_coef == 0.5
