"""Environments of our own and the benchmark suites (installed as ``ilvm_rl.envs``).

Importing this package registers the ``ilvm/`` ids; ``envs/README.md`` describes each task and
``envs/suites/`` holds the benchmark suites that name them.
"""

import gymnasium

# the same navigation hall with no TV (the reference), an action TV and a place TV
gymnasium.register(
    id="ilvm/NoisyTVNone-v0",
    entry_point="ilvm_rl.envs.navigation:NoisyTVEnv",
    kwargs={"tv": "none"},
    max_episode_steps=200,
    reward_threshold=0.9,
)
gymnasium.register(
    id="ilvm/NoisyTVAction-v0",
    entry_point="ilvm_rl.envs.navigation:NoisyTVEnv",
    kwargs={"tv": "action"},
    max_episode_steps=200,
    reward_threshold=0.9,
)
gymnasium.register(
    id="ilvm/NoisyTVPlace-v0",
    entry_point="ilvm_rl.envs.navigation:NoisyTVEnv",
    kwargs={"tv": "place"},
    max_episode_steps=200,
    reward_threshold=0.9,
)
gymnasium.register(
    id="ilvm/Fork-v0",
    entry_point="ilvm_rl.envs.fork:ForkEnv",
    max_episode_steps=50,
    reward_threshold=0.9,
)
gymnasium.register(
    id="ilvm/Maze-v0",
    entry_point="ilvm_rl.envs.maze:MazeEnv",
    max_episode_steps=500,
    reward_threshold=0.9,
)
# a grid room seen only as pixels: the image task of the representation module
gymnasium.register(
    id="ilvm/PixelRoom-v0",
    entry_point="ilvm_rl.envs.pixels:PixelRoomEnv",
    max_episode_steps=50,
    reward_threshold=10.0,
)
# an open room whose goal, far from the start, ends the episode: no TV, an action TV, a place TV
gymnasium.register(
    id="ilvm/OpenRoomNone-v0",
    entry_point="ilvm_rl.envs.room:OpenRoomEnv",
    kwargs={"tv": "none"},
    max_episode_steps=300,
    reward_threshold=0.7,
)
gymnasium.register(
    id="ilvm/OpenRoomAction-v0",
    entry_point="ilvm_rl.envs.room:OpenRoomEnv",
    kwargs={"tv": "action"},
    max_episode_steps=300,
    reward_threshold=0.7,
)
gymnasium.register(
    id="ilvm/OpenRoomPlace-v0",
    entry_point="ilvm_rl.envs.room:OpenRoomEnv",
    kwargs={"tv": "place"},
    max_episode_steps=300,
    reward_threshold=0.7,
)
# MiniGrid's DoorKey-8x8 with a flat view (needs the minigrid extra, imported when the env is made);
# max_episode_steps repeats MiniGrid's own limit, so both truncate on the same step
gymnasium.register(
    id="ilvm/DoorKey8x8-v0",
    entry_point="ilvm_rl.envs.doorkey:doorkey_8x8",
    max_episode_steps=640,
    reward_threshold=0.8,
)
# the width suite: the open room's TVs with 32 and 128 noise values, the room reporting [0, 1], the
# room seen as a picture with a patch of noise for a TV, and DoorKey-8x8 whose "done" action shows noise
for _kind in ("Action", "Place"):
    for _values in (32, 128):
        gymnasium.register(
            id=f"ilvm/OpenRoom{_kind}{_values}-v0",
            entry_point="ilvm_rl.envs.room:OpenRoomEnv",
            kwargs={"tv": _kind.lower(), "tv_dims": _values},
            max_episode_steps=300,
            reward_threshold=0.7,
        )
gymnasium.register(
    id="ilvm/OpenRoomActionUnit-v0",
    entry_point="ilvm_rl.envs.room:OpenRoomEnv",
    kwargs={"tv": "action", "unit_interval": True},
    max_episode_steps=300,
    reward_threshold=0.7,
)
gymnasium.register(
    id="ilvm/OpenRoomPixels-v0",
    entry_point="ilvm_rl.envs.room:OpenRoomPixelsEnv",
    kwargs={"tv": "action"},
    max_episode_steps=300,
    reward_threshold=0.7,
)
gymnasium.register(
    id="ilvm/DoorKeyTV8x8-v0",
    entry_point="ilvm_rl.envs.doorkey:doorkey_tv_8x8",
    max_episode_steps=640,
    reward_threshold=0.8,
)
