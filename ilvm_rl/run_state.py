"""A run's checkpoint: the SB3 model and the exploration module written as one pair, read back without
pickle, and the run's logs cut back to it when a run resumes.

Why a pair: a model that has trained for more steps than its exploration module (or fewer) trains on
bonuses of another time, without a word. So a checkpoint is first written whole into
``checkpoint.partial/`` (``model.zip``, ``exploration/``, an off-policy agent's ``replay.npz``, an
online representation's training in ``representation_online/``, and last ``checkpoint.json``, the
mark that the rest is complete), then moved into the run folder. A kill
while the pending pair is written leaves the previous pair untouched (the incomplete one is thrown
away); a kill while it is moved in is finished by the next resume (the mark says the pending pair is
whole). ``checkpoint.json`` records the step count that the model's zip and the module's
``settings.json`` must both carry, and what SB3 keeps outside the zip: its random streams and DQN's
target-update phase. The environments are not part of a checkpoint: a resumed run restarts them.

Why no pickle: SB3's ``load`` unpickles the zip's ``data`` entries, so a run folder from elsewhere
could run code. The model is rebuilt from the run's recipe, and only its tensors are read
(``torch.load(weights_only=True)``); step count and schedule position come from ``checkpoint.json``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import random
import shutil
import struct
import time
import zipfile
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import recursive_getattr
from stable_baselines3.common.vec_env import VecNormalize

from ilvm_rl.checkpoint import CheckpointError
from ilvm_rl.exploration.checkpoint import read_checkpoint_steps, save_explorer
from ilvm_rl.exploration.explorer import Explorer
from ilvm_rl.representation.extractor import RepresentationCallback
from ilvm_rl.sb3.replay import save_replay

MODEL_FILE, EXPLORATION_DIR, STATE_FILE = "model.zip", "exploration", "checkpoint.json"
# an off-policy agent's replay buffer, part of the pair (SB3's model.zip leaves it out)
REPLAY_FILE = "replay.npz"
# the online representation's replay, Adam's state and random stream (its model is in model.zip)
ONLINE_REPRESENTATION_DIR = "representation_online"
PENDING_DIR = "checkpoint.partial"
PROGRESS_FILE, STEP_COLUMN = "progress.csv", "time/total_timesteps"
# 2: SB3's random streams and DQN's target-update phase (a record of version 1 resumes without them)
STATE_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass
class RunState:
    """What a checkpoint records beside the tensors.

    Attributes:
        steps: environment steps the model and the module have trained on.
        n_updates: gradient steps of the agent (SB3's ``_n_updates``, logged as ``train/n_updates``).
        wall_time_s: training time of every segment of the run up to this checkpoint.
        episodes: the latest finished episodes (SB3's ``ep_info_buffer``: ``r``, ``l``, ``t``), so
            ``rollout/ep_rew_mean`` goes on where it stood.
        reward_scale: the running statistics of the recipe's ``normalize_reward`` (``VecNormalize``'s,
            rewards only; its own ``save`` would pickle them), or None.
        random_streams: the random streams SB3 seeds (:func:`random_streams`), so that a resumed
            run draws what follows the checkpoint instead of its seed's first numbers again; None in
            records written before they were kept.
        n_calls: DQN's ``_n_calls``, the phase of its target-network updates (None for other agents).
    """

    steps: int = 0
    n_updates: int = 0
    wall_time_s: float = 0.0
    episodes: list[dict[str, float]] = field(default_factory=list)
    reward_scale: dict[str, Any] | None = None
    random_streams: dict[str, Any] | None = None
    n_calls: int | None = None


def reward_scale_state(normalizer: VecNormalize) -> dict[str, Any]:
    """What :func:`restore_reward_scale` needs of a reward-normalising ``VecNormalize``, as JSON values."""
    stats = normalizer.ret_rms
    return {
        "mean": float(stats.mean),
        "var": float(stats.var),
        "count": float(stats.count),
        "returns": normalizer.returns.tolist(),
    }


def restore_reward_scale(normalizer: VecNormalize, state: dict[str, Any]) -> None:
    """Put the statistics :func:`reward_scale_state` recorded back into ``normalizer``."""
    normalizer.ret_rms.mean = np.asarray(float(state["mean"]))
    normalizer.ret_rms.var = np.asarray(float(state["var"]))
    normalizer.ret_rms.count = float(state["count"])
    normalizer.returns = np.asarray(state["returns"], dtype=np.float64).reshape(normalizer.returns.shape)


def random_streams(model: BaseAlgorithm) -> dict[str, Any]:
    """The random streams SB3 seeds (``set_random_seed``: torch's, numpy's and Python's global ones,
    and the action space's, which draws the off-policy warm-up's and DQN's random actions), as JSON
    values for :func:`restore_random_streams`."""
    numpy_state = np.random.get_state(legacy=False)
    python_version, python_internal, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state().tolist(),
        "numpy": {**numpy_state, "state": {**numpy_state["state"], "key": numpy_state["state"]["key"].tolist()}},
        "python": [python_version, list(python_internal), python_gauss],
        "action_space": model.action_space.np_random.bit_generator.state,
    }


def restore_random_streams(model: BaseAlgorithm, streams: dict[str, Any]) -> None:
    """Put the streams :func:`random_streams` recorded back; call it last when rebuilding a run, after
    everything that draws from them while it is built (initial weights, the exploration module).

    Raises:
        CheckpointError: a stream is missing or malformed.
    """
    try:
        torch.set_rng_state(torch.tensor(streams["torch"], dtype=torch.uint8))
        numpy_state = streams["numpy"]
        key = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
        np.random.set_state({**numpy_state, "state": {**numpy_state["state"], "key": key}})
        python_version, python_internal, python_gauss = streams["python"]
        random.setstate((python_version, tuple(python_internal), python_gauss))
        model.action_space.np_random.bit_generator.state = streams["action_space"]
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{STATE_FILE}: random_streams cannot be restored ({type(error).__name__}: {error})"
        ) from error


def save_pair(
    run_dir: Path,
    model: BaseAlgorithm,
    explorer: Explorer | None,
    wall_time_s: float,
    representation: RepresentationCallback | None = None,
) -> None:
    """Write ``model``, ``explorer`` and the training of an online ``representation`` as one
    checkpoint of ``run_dir`` (see the module docstring)."""
    pending = run_dir / PENDING_DIR
    shutil.rmtree(pending, ignore_errors=True)
    pending.mkdir()
    model.save(pending / MODEL_FILE)
    if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
        save_replay(model.replay_buffer, pending / REPLAY_FILE)
    if explorer is not None:
        save_explorer(explorer, pending / EXPLORATION_DIR, steps=model.num_timesteps)
    if representation is not None:
        representation.save(pending / ONLINE_REPRESENTATION_DIR, steps=model.num_timesteps)
    normalizer = model.get_vec_normalize_env()
    state = RunState(
        model.num_timesteps,
        model._n_updates,
        wall_time_s,
        list(model.ep_info_buffer or []),
        reward_scale_state(normalizer) if normalizer is not None else None,
        random_streams(model),
        getattr(model, "_n_calls", None),
    )
    marker = pending / (STATE_FILE + ".tmp")
    marker.write_text(json.dumps({"format_version": STATE_VERSION, **asdict(state)}, indent=2))
    marker.replace(pending / STATE_FILE)
    _move_in(run_dir)


def _move_in(run_dir: Path) -> None:
    """Move a complete pending pair into the run folder; safe to repeat after a kill at any point."""
    pending = run_dir / PENDING_DIR
    for name in (MODEL_FILE, EXPLORATION_DIR, REPLAY_FILE, ONLINE_REPRESENTATION_DIR):
        if (pending / name).exists():
            if (pending / name).is_dir():
                shutil.rmtree(run_dir / name, ignore_errors=True)
            (pending / name).replace(run_dir / name)
    (pending / STATE_FILE).replace(run_dir / STATE_FILE)
    shutil.rmtree(pending)


def recover_pair(run_dir: Path, with_exploration: bool) -> RunState:
    """The state of the newest complete checkpoint of ``run_dir``, after finishing a move that a kill
    interrupted (or dropping a pending pair that was never completed).

    Raises:
        CheckpointError: there is no checkpoint, or the model and the module were saved at different
            steps (or ``checkpoint.json`` is not ours).
    """
    pending = run_dir / PENDING_DIR
    if (pending / STATE_FILE).is_file():
        _move_in(run_dir)
    elif pending.exists():
        shutil.rmtree(pending)
    path = run_dir / STATE_FILE
    if (run_dir / MODEL_FILE).is_file() and not path.is_file():
        raise CheckpointError(
            f"{run_dir}: {MODEL_FILE} has no {STATE_FILE} beside it (a run made by an older version): its step "
            f"count and its pairing with the exploration module cannot be checked; train the run again"
        )
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} holds no checkpoint yet ({MODEL_FILE} and {STATE_FILE}); set checkpoint_every in the recipe"
        )
    try:
        record = json.loads(path.read_text())
        if record.pop("format_version") not in READABLE_VERSIONS:
            raise ValueError(f"format_version is not one of {READABLE_VERSIONS}")
        state = RunState(**record)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(f"{path}: not a checkpoint record of this package ({error})") from error
    model_steps = zip_steps(run_dir / MODEL_FILE)
    if model_steps != state.steps:
        raise CheckpointError(
            f"{run_dir / MODEL_FILE} was saved at step {model_steps}, but {path} records step {state.steps}: "
            f"the pair does not belong together"
        )
    modules = {EXPLORATION_DIR: "the exploration module"} if with_exploration else {}
    if (run_dir / ONLINE_REPRESENTATION_DIR).is_dir():
        modules[ONLINE_REPRESENTATION_DIR] = "the online representation's training"
    for folder, module in modules.items():
        module_steps = read_checkpoint_steps(run_dir / folder)
        if module_steps != state.steps:
            raise CheckpointError(
                f"{run_dir / folder} was saved at step {module_steps}, but {run_dir / MODEL_FILE} at step "
                f"{state.steps}: the model and {module} do not belong together"
            )
    return state


def zip_steps(path: Path) -> int:
    """The step count an SB3 model zip was saved at, read from its JSON ``data`` without unpickling.

    Raises:
        CheckpointError: not a readable SB3 model zip.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return int(json.loads(archive.read("data"))["num_timesteps"])
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: not a readable SB3 model zip ({error})") from error


def load_weights(model: BaseAlgorithm, path: Path) -> None:
    """Load the tensors of an SB3 model zip into ``model`` (built with the same recipe), reading each
    ``.pth`` entry with ``torch.load(weights_only=True)``: no pickled object is ever built.

    Raises:
        CheckpointError: the zip is unreadable or truncated, or its tensors do not fit ``model``.
    """
    state_dict_names, variable_names = model._get_torch_save_params()

    def read(archive: zipfile.ZipFile, name: str) -> Any:
        return torch.load(io.BytesIO(archive.read(f"{name}.pth")), map_location="cpu", weights_only=True)

    try:
        with zipfile.ZipFile(path) as archive:
            params = {name: read(archive, name) for name in state_dict_names}
            # tensors that are no module's parameters, such as SAC's learned log entropy coefficient
            variables = read(archive, "pytorch_variables") if variable_names else {}
        model.set_parameters(params, exact_match=True, device="cpu")
        for name in variable_names:
            recursive_getattr(model, name).data.copy_(variables[name])
    except (OSError, zipfile.BadZipFile, KeyError, RuntimeError, ValueError, pickle.UnpicklingError) as error:
        raise CheckpointError(
            f"{path}: cannot load the model's weights ({type(error).__name__}: {str(error).splitlines()[0]}); "
            f"it must be an SB3 model zip made by the same recipe"
        ) from error


def restore_position(model: BaseAlgorithm, state: RunState, total_steps: int) -> None:
    """Put a rebuilt ``model`` at the step count and schedule position of ``state`` in a run of
    ``total_steps`` (what ``learn(reset_num_timesteps=False)`` then continues from)."""
    model.num_timesteps = state.steps
    model._n_updates = state.n_updates
    model._current_progress_remaining = 1.0 - state.steps / total_steps
    model.ep_info_buffer = deque(state.episodes, maxlen=model._stats_window_size)
    model.ep_success_buffer = deque(maxlen=model._stats_window_size)
    if state.n_calls is not None:
        model._n_calls = state.n_calls  # type: ignore[attr-defined]  # DQN's only


def continued_logger(tb_dir: Path, steps: int | None) -> Logger:
    """SB3's TensorBoard and CSV logger for ``tb_dir``. When a run resumes from step ``steps``, what
    the logs hold beyond it (logged between the checkpoint and the kill, and played again now) is cut,
    and ``progress.csv`` is continued instead of truncated."""
    tb_dir.mkdir(parents=True, exist_ok=True)
    if steps is not None:
        for events in sorted(tb_dir.glob("*tfevents*")):
            cut_events(events, steps)
        wait_past(tb_dir)
    csv_format = ContinuedCSVOutputFormat(str(tb_dir / PROGRESS_FILE), steps)
    return Logger(str(tb_dir), [TensorBoardOutputFormat(str(tb_dir)), csv_format])


def wait_past(tb_dir: Path) -> None:
    """Wait until the clock has passed the second in the name of the newest event file of ``tb_dir``.

    Why: TensorBoard reads a folder's event files in name order, and a name starts with the second
    it was made in (then host and process id). A segment's file made within the same second as the
    previous segment's could sort before it, and TensorBoard would then drop the later steps it read
    first as orphaned when the earlier ones follow.
    """
    seconds = [int(part) for path in tb_dir.glob("*tfevents*") for part in path.name.split(".")[3:4] if part.isdigit()]
    while seconds and time.time() < max(seconds) + 1:
        time.sleep(0.05)


class ContinuedCSVOutputFormat(CSVOutputFormat):
    """SB3's CSV writer, continuing an existing file: its rows up to step ``steps`` are kept (SB3's
    own opens the file with ``w+`` and loses them).

    Args:
        filename: the CSV file.
        steps: keep the rows logged at or before this step; None starts a new file.
    """

    def __init__(self, filename: str, steps: int | None):
        path = Path(filename)
        rows: list[str] = []
        if steps is not None and path.is_file():
            lines = path.read_text().splitlines(keepends=True)
            rows = [line for line in lines[:1] if line.endswith("\n")]
            column = next(csv.reader(rows)).index(STEP_COLUMN) if rows and STEP_COLUMN in rows[0] else None
            for line in lines[1:]:
                if not line.endswith("\n"):  # a row cut short by the kill
                    continue
                value = next(csv.reader([line]))[column] if column is not None else ""
                if column is None or (value and float(value) <= steps):
                    rows.append(line)
        # replaced whole, never truncated first: a kill now leaves the old rows or the kept ones
        partial = path.with_name(path.name + ".partial")
        partial.write_text("".join(rows))
        partial.replace(path)
        # SB3's __init__ would open the file with w+ and lose the rows: set up its fields here
        self.file = path.open("r+")
        self.file.seek(0, os.SEEK_END)
        self.keys = next(csv.reader(rows[:1])) if rows else []
        self.separator, self.quotechar = ",", '"'


def _records(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """``(framed record, payload)`` of a TFRecord file (an event file); stops at a record cut short."""
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        end = offset + 12 + length + 4
        if end > len(data):
            return
        yield data[offset:end], data[offset + 12 : offset + 12 + length]
        offset = end


def cut_events(path: Path, steps: int) -> None:
    """Drop the events of a TensorBoard event file logged after step ``steps`` (and a last record cut
    short by a kill), so that a resumed run holds one value per step."""
    from tensorboard.compat.proto.event_pb2 import Event

    data = path.read_bytes()
    kept = [frame for frame, payload in _records(data) if Event.FromString(payload).step <= steps]
    if sum(map(len, kept)) == len(data):
        return
    partial = path.with_name("cut.partial")  # not an event file name: TensorBoard ignores it
    partial.write_bytes(b"".join(kept))
    os.replace(partial, path)
