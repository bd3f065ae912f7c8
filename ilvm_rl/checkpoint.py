"""Checkpoint folders of every module: tensors in safetensors, settings in JSON, no pickle.

A checkpoint folder holds ``weights.safetensors`` and ``settings.json``; the settings carry a
``format_version`` and whatever the module needs to rebuild itself (its settings, the spaces it was
built for). The exploration module, the representation's state model and the trajectory model each
decide what goes in; this module writes and reads the two files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

WEIGHTS_FILE, SETTINGS_FILE = "weights.safetensors", "settings.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, malformed or built for other spaces."""


def describe_space(space: spaces.Space) -> dict[str, Any]:
    """A JSON description of a space that is equal for equal spaces."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": space.low.tolist(),
            "high": space.high.tolist(),
        }
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {key: describe_space(part) for key, part in space.spaces.items()}}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    return {"type": type(space).__name__, "repr": repr(space)}


def write_checkpoint(folder: str | Path, tensors: dict[str, torch.Tensor], settings: dict[str, Any]) -> Path:
    """Write ``tensors`` and the JSON-able ``settings`` to ``folder`` (created if needed); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # temporary names first, so that an interrupted save never leaves half a checkpoint
    tmp_weights, tmp_settings = folder / (WEIGHTS_FILE + ".tmp"), folder / (SETTINGS_FILE + ".tmp")
    # a copy of each tensor: safetensors refuses tensors that share memory (views, tied weights)
    save_file({key: value.detach().clone().contiguous() for key, value in tensors.items()}, str(tmp_weights))
    tmp_settings.write_text(json.dumps(settings, indent=2))
    tmp_weights.replace(folder / WEIGHTS_FILE)
    tmp_settings.replace(folder / SETTINGS_FILE)
    return folder


def array_tensors(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """numpy arrays (a replay, running statistics) as tensors of the weights file, under the same names."""
    return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in arrays.items()}


def prefixed_arrays(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, np.ndarray]:
    """The tensors whose names start with ``prefix``, as numpy arrays named without it."""
    return {key.removeprefix(prefix): value.numpy() for key, value in tensors.items() if key.startswith(prefix)}


def optimiser_tensors(optimisers: Mapping[str, torch.optim.Optimizer]) -> dict[str, torch.Tensor]:
    """Each optimiser's per-parameter state (Adam's moments and step count) as tensors named
    ``optim.<name>.<parameter index>.<key>``, for :func:`load_optimisers`. Its settings (step size,
    betas) are not kept: the optimiser a module rebuilds from its own settings has them."""
    tensors: dict[str, torch.Tensor] = {}
    for name, optimiser in optimisers.items():
        for index, state in optimiser.state_dict()["state"].items():
            for key, value in state.items():
                tensors[f"optim.{name}.{index}.{key}"] = torch.as_tensor(value)
    return tensors


def load_optimisers(optimisers: Mapping[str, torch.optim.Optimizer], tensors: Mapping[str, torch.Tensor]) -> None:
    """Put the state :func:`optimiser_tensors` wrote back into optimisers built over the same
    parameters, in the same order (the state moves onto each parameter's device).

    Raises:
        ValueError: a name in ``tensors`` is not ``optim.<name>.<index>.<key>``, or the state does not
            fit the parameters.
    """
    for name, optimiser in optimisers.items():
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith(f"optim.{name}."):
                index, field = key.removeprefix(f"optim.{name}.").split(".", 1)
                state.setdefault(int(index), {})[field] = value
        groups = optimiser.state_dict()["param_groups"]
        optimiser.load_state_dict({"state": state, "param_groups": groups})


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        CheckpointError: the file cannot be read, is not valid JSON or holds no object.
    """
    try:
        settings = json.loads(path.read_text())
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint's settings ({error})") from error
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(settings, dict):
        raise CheckpointError(f"{path}: expected a JSON object of settings")
    return settings


def read_settings(folder: str | Path, kind: str, format_version: int) -> dict[str, Any]:
    """The settings of a checkpoint folder, after checking that both files are there.

    Args:
        kind: what the checkpoint holds and how it is made, for errors, e.g.
            ``"representation checkpoint (ilvm-rl pretrain --out)"``.
        format_version: the only format this reader accepts.

    Raises:
        CheckpointError: a file is missing, or the settings are malformed or of another format.
    """
    folder = Path(folder)
    settings_path = folder / SETTINGS_FILE
    for path in (settings_path, folder / WEIGHTS_FILE):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; a {kind} holds {SETTINGS_FILE} and {WEIGHTS_FILE}")
    settings = read_json(settings_path)
    if settings.get("format_version") != format_version:
        raise CheckpointError(
            f"{settings_path}: format_version {settings.get('format_version')!r}, expected {format_version} (a {kind})"
        )
    return settings


def check_spaces(folder: str | Path, settings: dict[str, Any], **expected: spaces.Space) -> None:
    """Refuse a checkpoint built for other spaces.

    Args:
        settings: the checkpoint's settings, which describe each space under its key.
        expected: the spaces of the environment by key, e.g. ``observation_space=env.observation_space``.

    Raises:
        CheckpointError: naming the key, the checkpoint's space and the environment's.
    """
    for key, space in expected.items():
        if settings.get(key) != describe_space(space):
            raise CheckpointError(
                f"{Path(folder) / SETTINGS_FILE}: {key} of the checkpoint is {settings.get(key)}, "
                f"but the environment's is {describe_space(space)}"
            )


def read_tensors(folder: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint folder.

    Raises:
        CheckpointError: the weights file is not a safetensors file.
    """
    path = Path(folder) / WEIGHTS_FILE
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"{path}: cannot read the weights ({error})") from error
