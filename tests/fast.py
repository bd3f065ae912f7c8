"""The fast preset: the real code path of a recipe with a tiny budget, for tests."""

FAST = {"n_envs": 2, "algo_kwargs": {"n_steps": 32, "batch_size": 32}, "eval_episodes": 1}
FAST_FLAGS = [
    "--set",
    "n_envs=2",
    "--set",
    "algo_kwargs.n_steps=32",
    "--set",
    "algo_kwargs.batch_size=32",
    "--set",
    "eval_episodes=1",
    "--no-progress",
]
