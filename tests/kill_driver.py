"""Runs ``ilvm-rl`` in a child process that stops, at a chosen point, to be killed there by a test.

Usage: ``python kill_driver.py POINT MARKER -- CLI ARGS...``. When the run reaches ``POINT`` it writes
the file ``MARKER`` and sleeps until it is killed. Points:

- ``rollout``: in the middle of the rollout after step 320 (logged; the last checkpoint is at 256);
- ``save``: while the second checkpoint is written (the module of the pending pair half done);
- ``between``: after the second checkpoint's model has replaced the first's, before its module has.
"""

import shutil
import sys
import time
from pathlib import Path

from ilvm_rl import run, run_state
from ilvm_rl.cli import main

point, marker = sys.argv[1], Path(sys.argv[2])
args = sys.argv[sys.argv.index("--") + 1 :]


def stop_here() -> None:
    marker.write_text("stopped")
    while True:
        time.sleep(1)


saves = 0
if point == "rollout":
    on_step = run.EpisodeRecorder._on_step

    def step_then_stop(self: run.EpisodeRecorder) -> bool:
        if self.num_timesteps >= 350:
            stop_here()
        return on_step(self)

    run.EpisodeRecorder._on_step = step_then_stop  # type: ignore[method-assign]
elif point == "save":
    save_explorer = run_state.save_explorer

    def save_then_stop(explorer, folder, steps=None):  # type: ignore[no-untyped-def]
        global saves
        saves += 1
        result = save_explorer(explorer, folder, steps=steps)
        if saves == 2:
            (Path(folder) / "weights.safetensors").unlink()  # as if the write were cut short
            stop_here()
        return result

    run_state.save_explorer = save_then_stop
elif point == "between":
    rmtree = shutil.rmtree

    def rmtree_or_stop(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        global saves
        path = Path(path)
        if path.name == "exploration" and (path.parent / run_state.PENDING_DIR / "exploration").exists():
            saves += 1
            if saves == 2:
                stop_here()
        return rmtree(path, *args, **kwargs)

    run_state.shutil.rmtree = rmtree_or_stop  # type: ignore[assignment]
sys.exit(main(args))
