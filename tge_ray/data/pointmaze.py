"""Scripted PointMaze policies, as D4RL made maze2d: BFS over maze cells + a PD controller.

The expert finds the shortest path over free cells from the ball's cell to the goal cell, and a
PD controller (``action = P_GAIN * (waypoint - pos) - D_GAIN * vel``, clipped to [-1, 1]) drives
the ball to the next cell's centre, and in the goal cell to the goal itself. The medium policy
is the same controller with Gaussian action noise, wandering to random goal cells (a new one each
time it reaches the last), like D4RL's maze2d data; random is uniform actions.

Evaluation goal, fixed: each maze's ``maze_map`` marks one goal cell ``"g"`` (``GOAL_CELLS``,
row/col counted from the top-left of the map) and every other free cell ``"r"`` (start cells).
UMaze: goal cell (1, 1), the top-left end of the U. Medium: goal cell (6, 6), as D4RL's
maze2d-medium. Gymnasium-Robotics adds uniform noise of +-0.25 to the goal and start positions
at reset; the task is continuing (the ball may stay at the goal), reward is sparse (1 within
0.45 of the goal), episodes are 300 (UMaze) and 600 (Medium) steps. These kwargs are the
datasets' ``eval_env``, so ``recover_environment(eval_env=True)`` builds the fixed-goal env.
"""

from __future__ import annotations

import contextlib
import io
from collections import deque

import gymnasium as gym
import numpy as np

# Importing gymnasium_robotics prints a notice about its Adroit envs (which this project does not
# use) to stderr, on every `tge` command; keep it out of the output.
with contextlib.redirect_stderr(io.StringIO()):
    import gymnasium_robotics
    from gymnasium_robotics.envs.maze import maps

gym.register_envs(gymnasium_robotics)

P_GAIN = 10.0
D_GAIN = 1.0
MAZES = {"pointmaze-umaze": ("PointMaze_UMaze-v3", maps.U_MAZE), "pointmaze-medium": ("PointMaze_Medium-v3", maps.MEDIUM_MAZE)}
GOAL_CELLS = {"pointmaze-umaze": (1, 1), "pointmaze-medium": (6, 6)}


def fixed_goal_map(task: str) -> list[list]:
    """The task's maze map with its one goal cell ``"g"`` and all other free cells ``"r"``."""
    base = MAZES[task][1]
    goal = GOAL_CELLS[task]
    return [["g" if (i, j) == goal else ("r" if cell == 0 else 1) for j, cell in enumerate(row)]
            for i, row in enumerate(base)]


def env_kwargs(task: str) -> dict:
    """Gymnasium kwargs of the fixed-goal evaluation env (also used to collect the data)."""
    return {"maze_map": fixed_goal_map(task), "continuing_task": True, "reset_target": False, "reward_type": "sparse"}


class MazeGeometry:
    """Cell <-> xy conversion (as Gymnasium-Robotics' ``Maze``, scaling 1) and BFS next cells."""

    def __init__(self, maze_map: list[list]):
        self.free = np.array([[cell != 1 for cell in row] for row in maze_map])  # (rows, cols)
        self.rows, self.cols = self.free.shape
        self.x_center, self.y_center = self.cols / 2, self.rows / 2
        # next_cell[goal][r, c] = (row, col) of the next cell on a shortest path from (r, c) to goal
        self._next_cell: dict[tuple[int, int], np.ndarray] = {}

    def cell_of(self, xy: np.ndarray) -> np.ndarray:
        """xy (B, 2) -> cells (B, 2) as (row, col), clipped into the map."""
        rows = np.floor(self.y_center - xy[:, 1]).astype(int).clip(0, self.rows - 1)
        cols = np.floor(xy[:, 0] + self.x_center).astype(int).clip(0, self.cols - 1)
        return np.stack([rows, cols], axis=1)

    def center_of(self, cells: np.ndarray) -> np.ndarray:
        """cells (B, 2) -> xy of their centres (B, 2)."""
        return np.stack([cells[:, 1] + 0.5 - self.x_center, self.y_center - (cells[:, 0] + 0.5)], axis=1)

    def next_cells(self, goal: tuple[int, int]) -> np.ndarray:
        """(rows, cols, 2): for each free cell, its neighbour one step closer to ``goal`` (BFS)."""
        if goal not in self._next_cell:
            table = np.tile(np.array(goal), (self.rows, self.cols, 1))
            queue = deque([goal])
            seen = {goal}
            while queue:
                r, c = queue.popleft()
                for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                    if 0 <= nr < self.rows and 0 <= nc < self.cols and self.free[nr, nc] and (nr, nc) not in seen:
                        seen.add((nr, nc))
                        table[nr, nc] = (r, c)
                        queue.append((nr, nc))
            self._next_cell[goal] = table
        return self._next_cell[goal]


class WaypointController:
    """Batch policy: dict obs of B envs -> actions (B, 2).

    ``noise_std`` > 0 adds Gaussian action noise; ``wander`` heads to random free cells instead
    of the env's goal (a new one whenever the ball reaches its current one).
    """

    def __init__(self, task: str, *, noise_std: float = 0.0, wander: bool = False, seed: int = 0):
        self.geometry = MazeGeometry(fixed_goal_map(task))
        self.goal_cell = GOAL_CELLS[task]
        self.noise_std = noise_std
        self.wander = wander
        self.rng = np.random.default_rng(seed)
        self.free_cells = np.argwhere(self.geometry.free)  # (n_free, 2)
        self.targets: np.ndarray | None = None  # (B, 2) wander target cells

    def _target_cells(self, cells: np.ndarray) -> np.ndarray:
        if self.targets is None:
            self.targets = self.free_cells[self.rng.integers(len(self.free_cells), size=len(cells))]
        reached = (cells == self.targets).all(axis=1)
        self.targets[reached] = self.free_cells[self.rng.integers(len(self.free_cells), size=int(reached.sum()))]
        return self.targets

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        state = obs["observation"]  # (B, 4): x, y, vx, vy
        pos, vel = state[:, :2], state[:, 2:]
        cells = self.geometry.cell_of(pos)  # (B, 2)
        if self.wander:
            targets = self._target_cells(cells)
            waypoints = np.empty_like(pos)
            for i, (cell, target) in enumerate(zip(cells, targets, strict=True)):
                step = self.geometry.next_cells(tuple(target))[cell[0], cell[1]]
                waypoints[i] = self.geometry.center_of(step[None])[0]
        else:
            steps = self.geometry.next_cells(self.goal_cell)[cells[:, 0], cells[:, 1]]  # (B, 2)
            waypoints = self.geometry.center_of(steps)
            at_goal = (cells == np.array(self.goal_cell)).all(axis=1)
            waypoints[at_goal] = obs["desired_goal"][at_goal]
        action = P_GAIN * (waypoints - pos) - D_GAIN * vel
        if self.noise_std > 0:
            action = action + self.rng.normal(0.0, self.noise_std, size=action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)
