"""Our own environments: env checker, seeding, the two TVs, the fork's branches, the maze's route, the
open room's reward, the flat DoorKey view, the suites."""

import importlib.util
import sys
import warnings
from collections import Counter, deque
from importlib import resources

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from ilvm_rl.bench import load_suite
from ilvm_rl.envs.doorkey import DONE_ACTION, DOORKEY_STEPS, FlatViewWrapper, doorkey_8x8, doorkey_tv_8x8
from ilvm_rl.envs.fork import ADVANCE, BACK, FORK_BRANCHES, LOWER, SWITCH, UPPER, ForkEnv
from ilvm_rl.envs.layout import MOVES, Layout
from ilvm_rl.envs.maze import MazeEnv
from ilvm_rl.envs.navigation import TV_ACTION, NoisyTVEnv, TVGridEnv
from ilvm_rl.envs.pixels import AGENT, GOAL, PixelRoomEnv
from ilvm_rl.envs.room import TV_PATCH_PIXELS, OpenRoomEnv, OpenRoomPixelsEnv

HAS_MINIGRID = importlib.util.find_spec("minigrid") is not None
needs_minigrid = pytest.mark.skipif(not HAS_MINIGRID, reason='needs the minigrid extra: pip install -e ".[minigrid]"')

# importing ilvm_rl.envs (above) registered the ids
REGISTERED_IDS = sorted(env_id for env_id in gym.registry if env_id.startswith("ilvm/"))
NAVIGATION_IDS = ["ilvm/NoisyTVNone-v0", "ilvm/NoisyTVAction-v0", "ilvm/NoisyTVPlace-v0"]
ROOM_IDS = ["ilvm/OpenRoomNone-v0", "ilvm/OpenRoomAction-v0", "ilvm/OpenRoomPlace-v0"]
WIDE_ROOM_IDS = [
    *(f"ilvm/OpenRoom{kind}{values}-v0" for kind in ("Action", "Place") for values in (32, 128)),
    "ilvm/OpenRoomActionUnit-v0",
]
DOORKEY_ID = "ilvm/DoorKey8x8-v0"
DOORKEY_TV_ID = "ilvm/DoorKeyTV8x8-v0"
DOORKEY_IDS = {DOORKEY_ID: doorkey_8x8, DOORKEY_TV_ID: doorkey_tv_8x8}
# the ids backed by an optional extra, whose tests skip without it
EXTRA_IDS = {DOORKEY_ID: needs_minigrid, DOORKEY_TV_ID: needs_minigrid}
ENV_IDS = [
    pytest.param(env_id, marks=EXTRA_IDS[env_id]) if env_id in EXTRA_IDS else env_id for env_id in REGISTERED_IDS
]
# the ids whose rollouts draw random numbers, so that another seed gives another rollout
RANDOM_IDS = [
    "ilvm/NoisyTVAction-v0",
    "ilvm/NoisyTVPlace-v0",
    "ilvm/OpenRoomAction-v0",
    "ilvm/OpenRoomPlace-v0",
    "ilvm/Fork-v0",
    "ilvm/PixelRoom-v0",
    *WIDE_ROOM_IDS,
    "ilvm/OpenRoomPixels-v0",
    pytest.param(DOORKEY_ID, marks=needs_minigrid),
    pytest.param(DOORKEY_TV_ID, marks=needs_minigrid),
]
# the ids whose observations are images rather than float vectors
IMAGE_IDS = ["ilvm/PixelRoom-v0", "ilvm/OpenRoomPixels-v0"]


def rollout(env_id: str, seed: int, steps: int = 300) -> list[tuple]:
    """Steps of a seeded random action sequence (the same for every seed), resetting after each episode."""
    env = gym.make(env_id)
    assert isinstance(env.action_space, gym.spaces.Discrete)
    actions = np.random.default_rng(0).integers(env.action_space.n, size=steps)
    observation, info = env.reset(seed=seed)
    record: list[tuple] = [(observation, info)]
    for action in actions:
        step = env.step(action)
        record.append(step)
        if step[2] or step[3]:
            record.append(env.reset())
    return record


def shortest_route(layout: Layout) -> list[int]:
    """Move actions of a shortest route from start to goal (breadth-first search over the layout)."""
    came_from: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {layout.start: None}
    queue = deque([layout.start])
    while queue:
        cell = queue.popleft()
        for action in range(len(MOVES)):
            target = layout.move(cell, action)
            if target not in came_from:
                came_from[target] = (cell, action)
                queue.append(target)
    route: list[int] = []
    cell = layout.goal
    while (step := came_from[cell]) is not None:
        cell, action = step
        route.append(action)
    return route[::-1]


def walk_past_the_tv(env: gym.Env, route: list[int]) -> list[tuple[float, bool, bool]]:
    """``(reward, terminated, truncated)`` of each step of ``route`` in a TV env, checking that the
    TV never plays and the agent never enters the place TV's region on the way."""
    grid = env.unwrapped
    assert isinstance(grid, TVGridEnv)
    outcomes = []
    for action in route:
        _, reward, terminated, truncated, info = env.step(action)
        assert not info["on_tv"] and grid.cell not in grid.layout.region
        outcomes.append((float(reward), terminated, truncated))
    return outcomes


def test_every_ilvm_env_is_registered() -> None:
    assert REGISTERED_IDS == sorted(
        [*NAVIGATION_IDS, *ROOM_IDS, *WIDE_ROOM_IDS, "ilvm/Fork-v0", "ilvm/Maze-v0", *IMAGE_IDS, *DOORKEY_IDS]
    )
    for env_id in REGISTERED_IDS:
        spec = gym.spec(env_id)
        assert spec.max_episode_steps is not None and spec.reward_threshold is not None


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_env_passes_the_env_checker_without_warnings(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if env_id in DOORKEY_IDS:
            # MiniGrid's own env observes a dict; the task is the wrapped one, which the checker
            # warns about and then checks in full
            warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
            warnings.filterwarnings("ignore", message=".*not having a spec")
            check_env(DOORKEY_IDS[env_id]())
        else:
            check_env(env.unwrapped)
    space = env.observation_space
    if env_id in IMAGE_IDS:  # what SB3 reads as an image: uint8 in [0, 255], at least 36 x 36 for NatureCNN
        assert isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
        assert (space.low == 0).all() and (space.high == 255).all() and min(space.shape[:2]) >= 36
    else:
        assert isinstance(space, gym.spaces.Box) and space.dtype == np.float32 and len(space.shape) == 1
        assert np.isfinite(space.low).all() and np.isfinite(space.high).all()
    assert isinstance(env.action_space, gym.spaces.Discrete)
    if env_id not in DOORKEY_IDS:  # MiniGrid renders images only
        assert isinstance(gym.make(env_id, render_mode="ansi").unwrapped.render(), str)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_gives_the_same_rollout_step_by_step(env_id: str) -> None:
    first, second = rollout(env_id, seed=3), rollout(env_id, seed=3)
    assert len(first) == len(second)
    for one, other in zip(first, second, strict=True):
        np.testing.assert_array_equal(one[0], other[0])
        assert one[1:] == other[1:]


@pytest.mark.parametrize("env_id", RANDOM_IDS)
def test_another_seed_gives_another_rollout(env_id: str) -> None:
    first, second = rollout(env_id, seed=3), rollout(env_id, seed=4)
    assert any(not np.array_equal(one[0], other[0]) for one, other in zip(first, second, strict=True))


# the hall and the open room share the TV's rules
TV_ENVS = [NoisyTVEnv, OpenRoomEnv]


@pytest.mark.parametrize("env_class", TV_ENVS)
def test_the_action_tv_plays_only_when_its_action_is_used(env_class: type[NoisyTVEnv | OpenRoomEnv]) -> None:
    env = env_class(tv="action")
    observation, info = env.reset(seed=0)
    assert not info["on_tv"] and not observation[2:].any()
    actions = np.random.default_rng(1).integers(5, size=400)
    for action in actions:
        before = env.cell
        observation, _, terminated, _, info = env.step(action)
        on_tv = action == TV_ACTION
        assert info["on_tv"] == on_tv
        assert bool(observation[2:].all()) == on_tv and bool(observation[2:].any()) == on_tv
        if on_tv:
            assert env.cell == before
        assert not terminated  # a random policy this short never reaches the goal


@pytest.mark.parametrize("env_class", TV_ENVS)
def test_the_place_tv_plays_only_in_its_region_whatever_the_action(
    env_class: type[NoisyTVEnv | OpenRoomEnv],
) -> None:
    env = env_class(tv="place")
    env.reset(seed=0)
    visited: Counter[tuple[bool, int]] = Counter()
    previous_picture = None
    for action in np.random.default_rng(1).integers(5, size=1000):
        observation, _, _, _, info = env.step(action)
        in_region = env.cell in env.layout.region
        visited[in_region, int(action)] += 1
        assert info["on_tv"] == in_region
        assert bool(observation[2:].all()) == in_region and bool(observation[2:].any()) == in_region
        # the noise is fresh on every step, so two TV steps in a row never show the same picture
        if in_region and previous_picture is not None:
            assert not np.array_equal(observation[2:], previous_picture)
        previous_picture = observation[2:] if in_region else None
    # the walk stood in the region under every action, the TV action included
    assert all(visited[True, action] > 0 for action in range(5))


@pytest.mark.parametrize("env_class", TV_ENVS)
def test_without_tv_the_extra_action_is_a_no_op(env_class: type[NoisyTVEnv | OpenRoomEnv]) -> None:
    env = env_class(tv="none")
    start, _ = env.reset(seed=0)
    for action in np.random.default_rng(1).integers(5, size=400):
        before = env.cell
        observation, _, _, _, info = env.step(action)
        assert not info["on_tv"] and not observation[2:].any()
        if action == TV_ACTION:
            assert env.cell == before
    observation, *_ = env.step(TV_ACTION)
    assert env.step(TV_ACTION)[0].tolist() == observation.tolist()
    assert start[2:].tolist() == [0.0] * env.tv_dims


@pytest.mark.parametrize("env_id", NAVIGATION_IDS)
def test_the_shortest_route_ignores_the_tv_and_pays_one(env_id: str) -> None:
    env = gym.make(env_id)
    navigation = env.unwrapped
    assert isinstance(navigation, NoisyTVEnv)
    layout = navigation.layout
    route = shortest_route(layout)
    max_steps = gym.spec(env_id).max_episode_steps
    assert max_steps is not None and len(route) == 34 < max_steps
    env.reset(seed=0)
    assert walk_past_the_tv(env, route) == [(0.0, False, False)] * 33 + [(1.0, True, False)]
    # the place TV is near the start: two moves away
    assert min(abs(r - layout.start[0]) + abs(c - layout.start[1]) for r, c in layout.region) == 2


@pytest.mark.parametrize("env_id", ROOM_IDS)
def test_the_open_room_pays_less_the_later_its_far_goal_is_reached(env_id: str) -> None:
    env = gym.make(env_id)
    room = env.unwrapped
    assert isinstance(room, OpenRoomEnv)
    layout = room.layout
    assert not layout.walls[1:-1, 1:-1].any() and layout.walls.shape == (27, 27)  # 25 x 25, no inner walls
    assert len(shortest_route(layout)) == 48
    # the diagonal route, up first: a shortest one that passes beside the place TV without touching it
    route = [0, 1] * 24
    env.reset(seed=0)
    assert walk_past_the_tv(env, route) == [(0.0, False, False)] * 47 + [
        (pytest.approx(1 - 0.9 * 48 / 300), True, False)
    ]
    spec = gym.spec(env_id)
    assert spec.max_episode_steps == room.max_steps == 300
    assert spec.reward_threshold is not None and spec.reward_threshold < 1 - 0.9 * 48 / 300
    # the same route after 52 steps against the top-left corner earns 1 - 0.9 * 100 / 300
    env.reset()
    for _ in range(26):
        env.step(0)
        env.step(3)
    reward = 0.0
    for action in route:
        _, reward, terminated, _, _ = env.step(action)
    assert terminated and reward == pytest.approx(0.7)
    # the place TV: a 3 x 3 patch a few moves from the start, along the bottom wall
    rows, cols = zip(*layout.region, strict=True)
    assert len(layout.region) == 9 and max(rows) - min(rows) == max(cols) - min(cols) == 2
    assert min(abs(r - layout.start[0]) + abs(c - layout.start[1]) for r, c in layout.region) == 3


def test_the_open_room_truncates_an_episode_that_never_arrives_with_nothing() -> None:
    env = gym.make("ilvm/OpenRoomNone-v0")
    env.reset(seed=0)
    for step in range(1, 301):
        _, reward, terminated, truncated, _ = env.step(TV_ACTION)
        assert (reward, terminated, truncated) == (0.0, False, step == 300)
    with pytest.raises(ValueError, match="max_steps"):
        OpenRoomEnv(max_steps=0)
    with pytest.raises(ValueError, match="region"):
        TVGridEnv(Layout.from_art("####\n#SG#\n####"), tv="place", tv_dims=2)


@needs_minigrid
def test_doorkey_view_is_minigrids_one_hot_view_flattened_and_keeps_its_reward() -> None:
    from minigrid.wrappers import OneHotPartialObsWrapper

    env = gym.make(DOORKEY_ID)
    reference = OneHotPartialObsWrapper(gym.make("MiniGrid-DoorKey-8x8-v0"))
    observation, _ = env.reset(seed=5)
    expected, _ = reference.reset(seed=5)
    assert env.observation_space.shape == (7 * 7 * 20 + 4,)
    for action in np.random.default_rng(0).integers(7, size=200):
        view, direction = observation[:-4], observation[-4:]
        np.testing.assert_array_equal(view, expected["image"].reshape(-1).astype(np.float32))
        assert direction.tolist() == [float(d == expected["direction"]) for d in range(4)]
        observation, *_ = env.step(action)
        expected, *_ = reference.step(action)
    # MiniGrid's reward passes through: step onto the goal (bottom-right) from its left after 100 steps
    doorkey = env.unwrapped
    assert gym.spec(DOORKEY_ID).max_episode_steps == DOORKEY_STEPS == doorkey.max_steps == 640
    goal = (doorkey.width - 2, doorkey.height - 2)
    assert doorkey.grid.get(*goal).type == "goal"
    doorkey.agent_pos, doorkey.agent_dir, doorkey.step_count = (goal[0] - 1, goal[1]), 0, 100
    _, reward, terminated, truncated, _ = env.step(2)
    assert (terminated, truncated) == (True, False) and reward == pytest.approx(1 - 0.9 * 101 / 640)
    with pytest.raises(ValueError, match="MiniGrid observation space"):
        FlatViewWrapper(gym.make("ilvm/Fork-v0"))


def test_doorkey_without_minigrid_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "minigrid", None)  # what an absent package looks like to import
    with pytest.raises(gym.error.DependencyNotInstalled, match=r"ilvm-rl\[minigrid\]"):
        gym.make(DOORKEY_ID)


def test_fork_next_states_cover_every_branch_with_its_probability() -> None:
    env = ForkEnv()
    trials = 4000
    start, _ = env.reset(seed=0)
    outcomes = env.outcomes(start, ADVANCE)
    assert [probability for _, probability in outcomes] == [probability for _, probability in FORK_BRANCHES]
    counts: Counter[int] = Counter()
    for _ in range(trials):
        env.reset()
        next_observation, *_ = env.step(ADVANCE)
        matches = [i for i, (outcome, _) in enumerate(outcomes) if np.array_equal(outcome, next_observation)]
        assert len(matches) == 1
        counts[matches[0]] += 1
    assert sorted(counts) == list(range(len(FORK_BRANCHES)))
    for index, (_, probability) in enumerate(FORK_BRANCHES):
        # four standard deviations of a binomial share
        assert abs(counts[index] / trials - probability) < 4 * np.sqrt(probability * (1 - probability) / trials)
    # the mean next lane lies between the lanes, where no state is
    mean_lane = sum(outcome[1] * probability for outcome, probability in outcomes)
    assert LOWER < mean_lane < UPPER and mean_lane not in (LOWER, UPPER)


def test_fork_outcomes_agree_with_the_steps_of_every_action() -> None:
    env = ForkEnv()
    observation, _ = env.reset(seed=0)
    for action in np.random.default_rng(2).integers(3, size=500):
        possible = env.outcomes(observation, int(action))
        assert np.isclose(sum(probability for _, probability in possible), 1.0)
        observation, _, terminated, _, _ = env.step(action)
        assert any(np.array_equal(outcome, observation) for outcome, _ in possible)
        if terminated:
            observation, _ = env.reset()


def test_fork_best_policy_solves_and_switch_back_are_deterministic() -> None:
    env = ForkEnv()
    observation, _ = env.reset(seed=0)
    assert env.outcomes(observation, BACK)[0][0].tolist() == observation.tolist()
    assert env.outcomes(observation, SWITCH)[0][0].tolist() == [-1.0, UPPER]
    for _ in range(20):
        observation, _ = env.reset()
        reward, steps = 0.0, 0
        while not reward:
            action = ADVANCE if observation[0] < 1.0 else SWITCH
            observation, reward, terminated, _, _ = env.step(action)
            steps += 1
            assert terminated == (reward == 1.0)
        assert steps <= env.length + 1


def test_maze_goal_is_far_but_within_the_time_limit() -> None:
    env = gym.make("ilvm/Maze-v0")
    maze = env.unwrapped
    assert isinstance(maze, MazeEnv)
    layout = maze.layout
    route = shortest_route(layout)
    max_steps = gym.spec("ilvm/Maze-v0").max_episode_steps
    assert max_steps is not None and 100 <= len(route) < max_steps / 2
    assert env.reset(seed=0)[1] == {"depth": 0}
    for index, action in enumerate(route):
        observation, reward, terminated, _, info = env.step(action)
        assert (reward, terminated) == ((1.0, True) if index == len(route) - 1 else (0.0, False))
        # along a shortest route every move goes one cell deeper
        assert info == {"depth": index + 1}
        # the wall sensors see the layout
        row, col = maze.cell
        walls = [layout.walls[row + d_row, col + d_col] for d_row, d_col in MOVES]
        assert observation[2:].tolist() == [float(wall) for wall in walls]


@pytest.mark.parametrize(
    "env_id", ["ilvm/Maze-v0", *NAVIGATION_IDS, *ROOM_IDS, *WIDE_ROOM_IDS, "ilvm/OpenRoomPixels-v0"]
)
def test_random_policy_does_not_solve_the_sparse_tasks(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(5):
        env.reset()
        while True:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            assert reward == 0.0
            if terminated or truncated:
                break


@pytest.mark.parametrize("suite", ["noisy_tv", "maze", "pixel_room", "open_room", "doorkey", "continuous", "width"])
def test_suites_load_with_the_registered_thresholds(suite: str) -> None:
    path = resources.files("ilvm_rl.envs") / "suites" / f"{suite}.yaml"
    loaded = load_suite(str(path))
    assert loaded == load_suite(suite)
    for task in loaded.tasks:
        assert task.env_id in REGISTERED_IDS or not task.env_id.startswith("ilvm/")
        assert task.threshold == gym.spec(task.env_id).reward_threshold


def test_layout_rejects_art_it_cannot_use() -> None:
    with pytest.raises(ValueError, match="enclosed by walls"):
        Layout.from_art("###\n#SG\n###")
    with pytest.raises(ValueError, match="exactly one 'G'"):
        Layout.from_art("####\n#S.#\n####")
    with pytest.raises(ValueError, match="allowed"):
        Layout.from_art("#####\n#SxG#\n#####")


def test_pixel_room_shows_agent_and_goal_and_pays_for_each_goal_reached() -> None:
    env = gym.make("ilvm/PixelRoom-v0")
    room = env.unwrapped
    assert isinstance(room, PixelRoomEnv)
    observation, _ = env.reset(seed=0)
    side = room.cell_pixels
    goals, steps = 0, 0
    while True:
        (row, col), (goal_row, goal_col) = room.cell, room._goal
        # the agent and the goal are blocks of one cell's pixels, the rest is black
        top, left = (row - 1) * side, (col - 1) * side
        assert (observation[top : top + side, left : left + side] == AGENT).all()
        assert (observation == AGENT).sum() == side * side and (observation == GOAL).sum() == side * side
        assert (goal_row, goal_col) != (row, col)
        # walk straight at the goal: one goal every few steps
        action = 2 if goal_row > row else 0 if goal_row < row else 1 if goal_col > col else 3
        observation, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        goals += int(reward)
        assert reward == float(room.cell == (goal_row, goal_col)) and not terminated
        if truncated:
            break
    spec = gym.spec("ilvm/PixelRoom-v0")
    assert steps == spec.max_episode_steps
    assert spec.reward_threshold is not None and goals >= spec.reward_threshold
    with pytest.raises(ValueError, match="divide 36"):
        PixelRoomEnv(size=5)


def test_the_unit_interval_room_is_the_same_room_rescaled() -> None:
    symmetric, unit = rollout("ilvm/OpenRoomAction-v0", seed=5), rollout("ilvm/OpenRoomActionUnit-v0", seed=5)
    assert gym.make("ilvm/OpenRoomActionUnit-v0").observation_space == gym.spaces.Box(0.0, 1.0, (10,), np.float32)
    for one, other in zip(symmetric, unit, strict=True):
        np.testing.assert_allclose((one[0] + 1.0) / 2.0, other[0])
        assert one[1:] == other[1:]


def test_the_pixel_room_draws_the_agent_the_goal_and_a_noise_patch_only_while_the_tv_plays() -> None:
    env = OpenRoomPixelsEnv(tv="action")
    image, info = env.reset(seed=0)
    assert not info["on_tv"] and image.shape == (36, 36, 1)
    assert (image == 255).sum() == 1 and (image == 128).sum() == 1 and image[-1, 0] == 0
    assert image[24, 0, 0] == 255 and image[0, 24, 0] == 128  # the start and the goal corner of the room
    patch = (slice(-TV_PATCH_PIXELS, None), slice(-TV_PATCH_PIXELS, None))
    for action in (TV_ACTION, 0, TV_ACTION):
        image, _, _, _, info = env.step(action)
        assert info["on_tv"] == (action == TV_ACTION)
        assert image[patch].any() == info["on_tv"]
        assert (image[:-TV_PATCH_PIXELS] == 255).sum() == 1  # the agent, drawn once outside the patch


@needs_minigrid
def test_noisy_doorkey_shows_random_cells_after_done_and_is_doorkey_otherwise() -> None:
    plain, noisy = doorkey_8x8(), doorkey_tv_8x8()
    first, _ = plain.reset(seed=7)
    second, info = noisy.reset(seed=7)
    np.testing.assert_array_equal(first, second)
    assert not info["on_tv"]
    for action in (0, 2, DONE_ACTION, 1, DONE_ACTION):
        first, reward, *_ = plain.step(action)
        second, noisy_reward, *_, info = noisy.step(action)
        assert reward == noisy_reward and info["on_tv"] == (action == DONE_ACTION)
        assert np.array_equal(first, second) != info["on_tv"]
        assert second.sum() == 7 * 7 * 3 + 1  # still one object, colour and state per cell, and a direction
