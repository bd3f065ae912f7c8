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


def as_flags(settings: dict, prefix: str = "") -> list[str]:
    """``--set key=value`` flags for a nested mapping of recipe settings."""
    flags: list[str] = []
    for key, value in settings.items():
        if isinstance(value, dict):
            flags += as_flags(value, f"{prefix}{key}.")
        else:
            flags += ["--set", f"{prefix}{key}={value}"]
    return flags


# off-policy agents (dqn, sac, td3): a small replay, small batches, training from the 64th step on
FAST_OFF_POLICY = {
    "n_envs": 2,
    "algo_kwargs": {"batch_size": 32, "buffer_size": 1000, "learning_starts": 64, "train_freq": 8, "gradient_steps": 2},
    "eval_episodes": 1,
}
FAST_OFF_POLICY_FLAGS = [*as_flags(FAST_OFF_POLICY), "--no-progress"]
