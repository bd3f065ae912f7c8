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
