"""RL Baselines3 Zoo users: our replay buffer and callback named in a Zoo hyperparameter file, trained
through rl_zoo3's own entry point (needs the ``zoo`` extra; skipped without it).

The Zoo runs in a process of its own: importing it registers environments of its own in Gymnasium's
registry, which would change what other tests see (close matches of a mistyped id, say)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from stable_baselines3 import DQN
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ilvm_rl.sb3 import ExplorationReplayBuffer

pytestmark = pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is None, reason="the zoo extra is not installed")

# a Zoo hyperparameter file in its Python form (the YAML form names classes by Python expressions the
# Zoo evaluates; a Python file imports them): settings are plain dicts, as the Zoo passes them on
HYPERPARAMETERS = """
from ilvm_rl.sb3 import ExplorationReplayBuffer

hyperparams = {
    "MountainCar-v0": dict(
        policy="MlpPolicy",
        n_timesteps=3000,
        learning_starts=500,
        batch_size=64,
        buffer_size=5000,
        train_freq=16,
        gradient_steps=2,
        policy_kwargs=dict(net_arch=[32]),
        replay_buffer_class=ExplorationReplayBuffer,
        replay_buffer_kwargs=dict(
            config=dict(bonus="ilvm", score="novelty", train_every=2, model=dict(objectives=["elbo"]))
        ),
        callback="ilvm_rl.sb3.ReplayExplorationCallback",
    )
}
"""


def test_the_zoo_trains_dqn_with_our_replay_buffer_and_callback(tmp_path: Path) -> None:
    config = tmp_path / "dqn_ilvm.py"
    config.write_text(HYPERPARAMETERS)
    logs, tensorboard = tmp_path / "logs", tmp_path / "tb"
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", "dqn", "--env", "MountainCar-v0"]
    command += ["-conf", str(config), "-f", str(logs), "-tb", str(tensorboard)]
    command += ["--eval-freq", "-1", "--seed", "0", "--device", "cpu"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (saved,) = logs.glob("dqn/MountainCar-v0_*/MountainCar-v0.zip")
    model = DQN.load(saved, device="cpu")
    assert model.num_timesteps >= 3000 and model.replay_buffer_class is ExplorationReplayBuffer
    (events,) = tensorboard.glob("MountainCar-v0/*/events.out.tfevents.*")
    tags = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    for tag in ("ilvm/int_reward_mean", "ilvm/loss/total", "ilvm/score_time_ms"):
        assert tag in tags, tag
