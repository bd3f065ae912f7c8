"""Agent recipes: an algorithm, its hyperparameters and the exploration module, per environment id.

A recipe is a YAML file in ``agents/`` (or any path) laid out like RL Baselines3 Zoo's files::

    extends: ppo            # optional: start from another recipe, so shared settings stay shared
    default:                # settings for every environment
      exploration: {bonus: ilvm, score: excess_error}
      representation: {mode: frozen}
    MountainCar-v0:         # settings for one environment id, merged over ``default``
      algo_kwargs: {gamma: 0.99}

Sections are merged deeply (a nested mapping updates the one below it), parent first; a section that
names another bonus drops the keys of the bonus below it.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import itertools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.utils import LinearSchedule

from ilvm_rl.config import (
    ConfigError,
    check_type,
    checked_threshold,
    from_dict,
    merge_settings,
    read_yaml_mapping,
    shipped_names,
    shipped_or_path,
)
from ilvm_rl.exploration.explorer import ExplorationConfig
from ilvm_rl.representation.state_model import RepresentationConfig

Device = Literal["auto", "cpu", "cuda"]
"""The devices a recipe may name (``auto``: a GPU when torch sees one)."""
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC, "td3": TD3}
# keys of the algorithm's constructor that the runner sets itself
RESERVED_ALGO_KEYS = {"policy", "env", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model"}
# integer settings of each algorithm and their least accepted value (PPO splits a rollout into
# minibatches whose advantages it normalises: one sample has no spread)
COUNT_ALGO_KEYS = {
    "ppo": {"n_steps": 1, "batch_size": 2, "n_epochs": 1},
    "a2c": {"n_steps": 1},
    **{algo: {"buffer_size": 1, "batch_size": 1} for algo in ("dqn", "sac", "td3")},
}
# top-level keys of a recipe file besides environment ids
RECIPE_KEYS = ("extends", "default")


@dataclass(frozen=True)
class Recipe:
    """A resolved recipe for one environment.

    Attributes:
        algo: ``ppo`` or ``a2c`` (on-policy: the bonus comes through :class:`ExplorationCallback`), or
            ``dqn``, ``sac`` or ``td3`` (off-policy: through the replay buffer,
            :class:`ilvm_rl.sb3.replay.ExplorationReplayBuffer`).
        policy: SB3 policy name, e.g. ``MlpPolicy``.
        device: where the agent and its modules compute: ``cpu`` (the small networks of most
            recipes run fastest there), ``cuda`` (a GPU; refused where torch sees none) or ``auto``
            (a GPU when torch sees one). ``ilvm-rl train --device`` overrides it; a run's
            checkpoints load onto any device.
        n_envs: parallel training environments.
        normalize_obs: ``bounds`` rescales a bounded Box observation to [-1, 1] for the agent and the
            exploration module alike (MountainCar's velocity spans ±0.07, too little for an
            unnormalised policy network to read); ``none`` passes observations through.
        normalize_reward: divide the task's rewards by a running std of their discounted return
            (SB3's ``VecNormalize`` on rewards only, clipped to ±10), so that the task's advantages
            come in the same units whatever the reward's scale, as the intrinsic stream's do; its
            statistics are saved beside each checkpoint as JSON. Monitor files, episode returns and
            evaluations keep the environment's own rewards.
        algo_kwargs: keyword arguments of the algorithm's constructor (``n_steps``, ``gamma``...).
        learning_rate_final: if set, the algorithm's step size falls linearly from
            ``algo_kwargs.learning_rate`` (or the algorithm's default) to this value at the end of the
            run, so that the last updates polish the policy instead of moving it about.
        exploration: the exploration module, or null for none.
        representation: the representation module (the ILVM state model as the policy's features
            extractor), or null for the policy's own extractor.
        eval_episodes: episodes of the final evaluation.
        eval_deterministic: evaluate the arg-max policy (true) or the sampled one, as it trained (false).
        checkpoint_every: save model and module every this many steps (0: only at the end).
        threshold: the return a run must reach, e.g. for an environment registered without a
            ``reward_threshold`` (a run then reports found and kept as null): the trailing mean of
            10 training returns reaching it counts as found, the final evaluation as kept. Null
            takes the environment's ``reward_threshold``; ``ilvm-rl train --threshold`` overrides
            it, and a benchmark's suite sets one for every agent.
    """

    algo: Literal["ppo", "a2c", "dqn", "sac", "td3"] = "ppo"
    policy: str = "MlpPolicy"
    device: Device = "cpu"
    n_envs: int = 8
    normalize_obs: Literal["none", "bounds"] = "none"
    normalize_reward: bool = False
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    learning_rate_final: float | None = None
    exploration: ExplorationConfig | None = None
    representation: RepresentationConfig | None = None
    eval_episodes: int = 10
    eval_deterministic: bool = True
    checkpoint_every: int = 0
    threshold: float | None = None

    def __post_init__(self) -> None:
        checked_threshold("threshold", self.threshold)
        for name, least in (("n_envs", 1), ("eval_episodes", 1), ("checkpoint_every", 0)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)}")
        if self.learning_rate_final is not None and not self.learning_rate_final >= 0:
            raise ValueError(f"learning_rate_final must be >= 0, got {self.learning_rate_final}")
        policy_kwargs = self.algo_kwargs.get("policy_kwargs") or {}
        if self.representation is not None and "features_extractor_class" in policy_kwargs:
            raise ValueError(
                "algo_kwargs.policy_kwargs.features_extractor_class is set, but the representation section "
                "supplies the features extractor; remove one of them"
            )
        parameters = inspect.signature(ALGORITHMS[self.algo].__init__).parameters
        accepted = set(parameters) - RESERVED_ALGO_KEYS - {"self"}
        for key, value in self.algo_kwargs.items():
            if key == "device":
                raise ValueError("algo_kwargs: 'device' is a key of the recipe itself (device: auto, cpu or cuda)")
            if key not in accepted:
                raise ValueError(
                    f"algo_kwargs: {key!r} is not an argument of {self.algo}; accepted: {', '.join(sorted(accepted))}"
                )
            check_type(value, parameters[key].annotation, f"algo_kwargs.{key}")
        learning_rate = self._starting_learning_rate()
        if self.learning_rate_final is not None and (
            isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float))
        ):
            raise ValueError(
                f"learning_rate_final sets a schedule from algo_kwargs.learning_rate, which must then be a "
                f"number, got {learning_rate!r}"
            )
        # counts the algorithm checks only with an assert, or not at all, once it is built on an env
        for key, least in COUNT_ALGO_KEYS.get(self.algo, {}).items():
            value = self.algo_kwargs.get(key, parameters[key].default)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"algo_kwargs.{key} must be an integer >= {least}, got {value!r}")
        if issubclass(ALGORITHMS[self.algo], OffPolicyAlgorithm):
            self._check_off_policy({name: p.default for name, p in parameters.items()})
            return
        rollout = self.algo_kwargs.get("n_steps", parameters["n_steps"].default) * self.n_envs
        if self.exploration is not None and self.exploration.store_capacity < rollout:
            raise ValueError(
                f"exploration.store_capacity={self.exploration.store_capacity} is smaller than one rollout "
                f"(algo_kwargs.n_steps × n_envs = {rollout}); the module keeps a whole rollout to score it"
            )

    def _starting_learning_rate(self) -> Any:
        """``algo_kwargs.learning_rate``, or the algorithm's default step size."""
        default = inspect.signature(ALGORITHMS[self.algo].__init__).parameters["learning_rate"].default
        return self.algo_kwargs.get("learning_rate", default)

    def learning_rate_schedule(self) -> LinearSchedule | None:
        """The falling step size ``learning_rate_final`` asks for, or None for the algorithm's own."""
        if self.learning_rate_final is None:
            return None
        return LinearSchedule(float(self._starting_learning_rate()), self.learning_rate_final, end_fraction=1.0)

    def _check_off_policy(self, defaults: dict[str, Any]) -> None:
        settings = {**defaults, **self.algo_kwargs}
        if settings["buffer_size"] < settings["batch_size"]:
            raise ValueError(
                f"algo_kwargs: buffer_size={settings['buffer_size']} holds fewer transitions than one batch "
                f"(batch_size={settings['batch_size']}); raise buffer_size to at least batch_size"
            )
        if "replay_buffer_class" in self.algo_kwargs:
            raise ValueError(
                "algo_kwargs: replay_buffer_class is chosen by the runner (the exploration section configures "
                "the bonus buffer); remove it"
            )
        policy_kwargs = settings.get("policy_kwargs") or {}
        if (
            self.representation is not None
            and self.representation.mode == "online"
            and self.algo in ("sac", "td3")
            and not policy_kwargs.get("share_features_extractor", False)
        ):
            raise ValueError(
                f"representation: online mode trains one features extractor, and {self.algo}'s actor and critic "
                f"each build their own; set algo_kwargs.policy_kwargs.share_features_extractor to true"
            )
        if self.exploration is not None and settings["optimize_memory_usage"]:
            raise ValueError(
                "algo_kwargs: optimize_memory_usage=true cannot carry the exploration bonus (that mode overwrites "
                "an episode's terminal observation); set it to false or remove the exploration section"
            )


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``agents/``."""
    return shipped_names(resources.files("ilvm_rl.agents"))


def recipe_summary(agent: str) -> str:
    """What a recipe is, from the opening sentence of its file's leading comment, up to the first
    colon, semicolon or full stop (``PPO with the ILVM exploration bonus``); empty without one."""
    lines = recipe_path(agent).read_text().splitlines()
    leading = itertools.takewhile(lambda line: line.startswith("#"), lines)
    comment = " ".join(line.lstrip("#").strip() for line in leading)
    return re.split(r"[:;.](?:\s|$)", comment, maxsplit=1)[0].strip()


def recipe_path(agent: str) -> Path:
    """The file of a recipe given by name (``ppo_ilvm``) or path (``my/recipe.yaml``)."""
    return shipped_or_path(agent, resources.files("ilvm_rl.agents"), "agent")


def check_env_id(env_id: str) -> None:
    """Raise a :class:`ConfigError` naming close matches if ``env_id`` is not registered.

    ``module:Name-v0`` ids (Gymnasium's way to name an env registered by a module of one's own)
    import the module first.
    """
    env_spec(env_id)


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registration of ``env_id``; a ``module:Name-v0`` id imports ``module`` first (``gym.spec``
    alone does not take the module prefix that ``gym.make`` accepts).

    Raises:
        ConfigError: the module cannot be imported or the id is not registered (naming close matches).
    """
    import ilvm_rl.envs  # noqa: F401  (registers the ilvm/ environments)

    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(f"environment id {env_id!r}: cannot import module {module!r} ({error})") from error
    if name not in gym.envs.registry:
        close = difflib.get_close_matches(name, list(gym.envs.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown environment id {env_id!r}{hint}")
    return gym.envs.registry[name]


def is_env_id(name: str) -> bool:
    """Whether ``name`` is a registered environment id (importing the module of a ``module:Name`` id)."""
    try:
        env_spec(name)
    except ConfigError:
        return False
    return True


def file_stem(env_id: str) -> str:
    """``env_id`` as part of a file or folder name: no ``/`` (a namespace) and no ``:`` (a module
    prefix, which some file systems and tools refuse)."""
    return env_id.replace("/", "-").replace(":", "-")


def _sections(path: Path, env_id: str, seen: tuple[Path, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """The ``(label, section)`` pairs that apply to ``env_id``, parent recipes first."""
    if path.resolve() in seen:
        raise ConfigError(f"{path}: 'extends' forms a cycle through {', '.join(p.name for p in seen)}")
    data = read_yaml_mapping(path, "a recipe: a mapping of 'extends', 'default' and environment ids")
    for name, section in data.items():
        if name in RECIPE_KEYS:
            continue
        if not isinstance(name, str) or not is_env_id(name):
            close = difflib.get_close_matches(str(name), [*RECIPE_KEYS, *gym.envs.registry], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(
                f"{path}: {name}: not a recipe section{hint}; the top-level keys are 'extends', 'default' "
                f"and registered environment ids (module:Name-v0 for an env a module registers)"
            )
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"{path}: {name}: expected a mapping of settings, got {section!r}")
    sections: list[tuple[str, dict[str, Any]]] = []
    parent = data.get("extends")
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: extends: expected a recipe name or path, got {parent!r}")
        try:
            parent_path = recipe_path(parent)
        except ConfigError as error:
            raise ConfigError(f"{path}: extends: {error}") from error
        sections += _sections(parent_path, env_id, (*seen, path.resolve()))
    for name in ("default", env_id):
        section = data.get(name)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: {name}: expected a mapping of settings, got {section!r}")
        sections.append((f"{path}: {name}", section))
    return sections


def _merged_sections(agent: str, env_id: str) -> dict[str, Any]:
    """The settings of a recipe's sections for ``env_id``, merged in order, each merge checked."""
    merged: dict[str, Any] = {}
    for label, section in _sections(recipe_path(agent), env_id):
        merged = merge_settings(Recipe, merged, section)
        from_dict(Recipe, merged, label)  # names the first section whose settings break the schema
    return merged


def _agents_with_bonus(algo: str, env_id: str) -> list[str]:
    """Shipped recipes that train ``algo`` with an exploration bonus on ``env_id``."""
    recipes = {name: from_dict(Recipe, _merged_sections(name, env_id), name) for name in recipe_names()}
    return [name for name, recipe in recipes.items() if recipe.algo == algo and recipe.exploration is not None]


def load_recipe(agent: str, env_id: str, overrides: dict[str, Any] | None = None) -> tuple[Recipe, dict[str, Any]]:
    """Resolve a recipe for ``env_id``.

    Args:
        agent: recipe name in ``agents/`` or path to a recipe file.
        env_id: a registered Gymnasium id.
        overrides: settings merged last (e.g. from ``--set`` on the command line).

    Returns:
        The validated recipe and the merged plain dict (what a run folder records).

    Raises:
        ConfigError: naming the file, section and key at fault.
    """
    check_env_id(env_id)
    merged = _merged_sections(agent, env_id)
    if overrides:
        exploration = overrides.get("exploration")
        if merged.get("exploration") is None and isinstance(exploration, dict) and "bonus" not in exploration:
            # a tweak of the bonus would otherwise give a baseline the default bonus under its own name
            raise ConfigError(
                f"overrides: agent {agent} has no exploration bonus to change ({', '.join(exploration)}); "
                "add one on purpose with exploration.bonus, or pick an agent that has one "
                f"({', '.join(_agents_with_bonus(from_dict(Recipe, merged, agent).algo, env_id))})"
            )
        merged = merge_settings(Recipe, merged, overrides)
        from_dict(Recipe, merged, "overrides")
    return from_dict(Recipe, merged, f"recipe {agent} for {env_id}"), merged
