"""Environments of our own and the benchmark suites (installed as ``ilvm_rl.envs``)."""
