"""Property-based tests over recipe files and ``--set`` overrides: whatever the input, ``ilvm-rl train``
either trains (a tiny budget) or fails with exactly one ``ilvm-rl: error:`` line that names where the
bad setting came from, never with a traceback, and never leaves a run folder behind.

Most generated inputs fail validation, which is quick; the few that train run 64 steps. The examples
are derandomised, so every run of the suite tries the same inputs.
"""

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ilvm_rl.cli import main

FUZZ = settings(
    max_examples=60,
    deadline=None,  # an example that trains takes seconds on a busy 2-core machine
    derandomize=True,
    database=None,  # derandomised: nothing to remember between runs, and no .hypothesis folder
    suppress_health_check=[HealthCheck.too_slow],
)

# small values, the boundaries the checks must catch, and values of every other YAML type
numbers = st.one_of(st.integers(-2, 40), st.sampled_from([0.0, -1.0, 0.5, 1e9, float("nan"), float("inf")]))
scalars = st.one_of(numbers, st.booleans(), st.none(), st.sampled_from(["", "ppo", "elbo", "bounds", "x"]))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=2),
    max_leaves=5,
)

RECIPE_KEYS = [
    "algo",
    "policy",
    "n_envs",
    "normalize_obs",
    "algo_kwargs",
    "learning_rate_final",
    "exploration",
    "eval_episodes",
    "checkpoint_every",
    "bogus",
]
ALGO_KEYS = ["n_steps", "batch_size", "n_epochs", "gamma", "learning_rate", "ent_coef", "policy_kwargs", "lr"]
EXPLORATION_KEYS = [
    "bonus",
    "score",
    "samples",
    "int_coef",
    "int_coef_final",
    "ext_coef",
    "coef",
    "store_capacity",
    "batch_size",
    "updates_per_rollout",
    "scale_memory",
    "model",
    "nope",
]
MODEL_KEYS = ["objectives", "latent_dim", "hidden_sizes", "n_samples", "kl_weight", "free_bits"]


def mapping(keys: list[str], value: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), value, max_size=3)


model = mapping(MODEL_KEYS, st.one_of(values, st.lists(st.integers(-1, 8), max_size=3), st.just(["energy"])))
exploration = mapping(EXPLORATION_KEYS, st.one_of(values, model)) | values
algo_kwargs = mapping(ALGO_KEYS, values) | values
# always with a small pretraining, so that a valid one stays quick
representation = st.none() | st.fixed_dictionaries(
    {"pretrain_steps": st.integers(-1, 32), "fit_steps": st.integers(-1, 4)},
    optional={
        "mode": st.sampled_from(["frozen", "finetune", "online", "x"]),
        "checkpoint": st.sampled_from([None, "nowhere", 3]),
        "batch_size": numbers,
        "store_capacity": numbers,
        "model": model,
    },
)
section = st.fixed_dictionaries(
    {},
    optional={
        "algo": st.sampled_from(["ppo", "a2c", "sac", 1]),
        "n_envs": numbers,
        "normalize_obs": st.sampled_from(["none", "bounds", "all"]),
        "algo_kwargs": algo_kwargs,
        "learning_rate_final": numbers,
        "exploration": exploration,
        "representation": representation,
        "eval_episodes": numbers,
        "checkpoint_every": numbers,
        "bogus": values,
    },
)
recipe = st.dictionaries(
    st.sampled_from(["default", "CartPole-v1", "MountainCar-v0", "defualt", "CartPole-v9", "extends", "7"]),
    st.one_of(section, values, st.sampled_from(["ppo", "ppo_ilvm", "nope"])),
    max_size=3,
)
set_keys = st.one_of(
    st.sampled_from(
        [*RECIPE_KEYS, *(f"algo_kwargs.{k}" for k in ALGO_KEYS), *(f"exploration.{k}" for k in EXPLORATION_KEYS)]
    ),
    st.sampled_from(["exploration.model.latent_dim", "n_envs.x", "", ".", "a..b", "exploration.", "=x"]),
)
set_values = st.one_of(
    st.sampled_from(["0", "-1", "2", "1.5", "x", "[1]", "{a: 1}", "", "null", "[", "true"]), st.text(max_size=4)
)
overrides = st.lists(st.tuples(set_keys, set_values).map(lambda pair: f"{pair[0]}={pair[1]}") | set_keys, max_size=3)

# every run is tiny whatever the recipe says, unless the input itself breaks one of these
TINY = ["--set", "eval_episodes=1", "--no-progress", "--steps", "64"]


def train_once(recipe_text: str, pairs: list[str]) -> None:
    """Train the recipe and check the property; the run folder is removed afterwards."""
    with tempfile.TemporaryDirectory() as scratch:
        path, runs = Path(scratch) / "fuzzed.yaml", Path(scratch) / "runs"
        path.write_text(recipe_text)
        argv = ["train", "--agent", str(path), "--env", "CartPole-v1", "--runs-dir", str(runs), *TINY]
        for pair in pairs:
            argv += ["--set", pair]
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(argv)
        folders = [p for p in runs.iterdir() if p.is_dir()] if runs.is_dir() else []
        if code == 0:
            assert len(folders) == 1 and (folders[0] / "results.json").is_file()
            return
        message = err.getvalue()
        assert code == 2 and message.startswith("ilvm-rl: error: ") and message.count("\n") == 1, message
        # the error names where the setting came from: the recipe file, or the command line
        assert any(origin in message for origin in (str(path), "overrides", "--set", "fuzzed")), message
        assert not folders, f"a failed start left {folders}"


@FUZZ
@given(recipe, overrides)
@example({"extends": "ppo_ilvm", "CartPole-v1": {"exploration": {"int_coef": 0.5}}}, [])  # one that trains, always
def test_any_recipe_trains_or_fails_with_one_named_error(data: dict[str, Any], pairs: list[str]) -> None:
    # a few settings keep any recipe that is valid tiny to train
    tiny = {"n_envs": 1, "algo_kwargs": {"n_steps": 16, "batch_size": 16}}
    data = {"default": tiny, **data} if "default" not in data else data
    train_once(yaml.safe_dump(data), ["n_envs=1", "algo_kwargs.n_steps=16", "algo_kwargs.batch_size=16", *pairs])


@FUZZ
@given(st.text(alphabet=":{}[]-#&*!|>'\"%@` \n\tabc01", max_size=40))
def test_any_recipe_text_trains_or_fails_with_one_named_error(text: str) -> None:
    train_once(text, ["n_envs=1", "algo_kwargs.n_steps=16", "algo_kwargs.batch_size=16"])
