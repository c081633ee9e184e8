"""State-only windows (s_t, ..., s_{t+H-1}) at every step of every episode.

Past an episode's end the last state repeats. The windows are never all held at once: each
episode is stored once with H - 1 copies of its last state appended (``padded``), so the window
of transition t is the contiguous block ``padded[start[t] : start[t] + H]`` with
``start[t] = t + (H - 1) * episode(t)``. A batch of windows is one gather of such blocks,
written into a reused buffer when streaming, so building 1M windows at H = 32 costs the padded
copy of the observations plus one batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tge_ray.errors import ConfigError, DataError


class Windows:
    """Windows of horizon H over episodes, addressed by transition index.

    Args:
        observations: (N, obs_dim) states in episode order (standardise them first).
        episode_ids: (N,) non-decreasing episode numbers 0..E-1 (rows of one episode contiguous).
        horizon: H >= 1.
    """

    def __init__(self, observations: np.ndarray, episode_ids: np.ndarray, horizon: int) -> None:
        if horizon < 1:
            raise ConfigError(f"windows.horizon={horizon} is not allowed: must be >= 1")
        observations = np.ascontiguousarray(observations, dtype=np.float32)
        episode_ids = np.asarray(episode_ids, dtype=np.int64)
        if observations.ndim != 2 or episode_ids.shape != (observations.shape[0],):
            raise DataError(
                f"windows need observations (N, obs_dim) and episode_ids (N,), got "
                f"{observations.shape} and {episode_ids.shape}"
            )
        if observations.shape[0] == 0:
            raise DataError("no transitions to cut windows from: the dataset is empty")
        if np.any(np.diff(episode_ids) < 0):
            raise DataError("episode_ids must be non-decreasing (episodes stored contiguously)")
        self.horizon = horizon
        self.n_windows = observations.shape[0]
        self.obs_dim = observations.shape[1]
        # Episodes renumbered 0..E-1 in order, whatever ids came in.
        episode = np.concatenate([[0], np.cumsum(np.diff(episode_ids) != 0)]).astype(np.int64)
        self.starts = np.arange(self.n_windows, dtype=np.int64) + (horizon - 1) * episode  # (N,)
        n_episodes = int(episode[-1]) + 1
        if horizon == 1:
            self.padded = observations
        else:
            # Last row of every episode, repeated H - 1 times, inserted after the episode.
            last_rows = np.flatnonzero(np.diff(np.append(episode, n_episodes)) != 0)  # (E,)
            repeats = np.ones(self.n_windows, dtype=np.int64)
            repeats[last_rows] = horizon
            self.padded = np.repeat(observations, repeats, axis=0)  # (N + E(H-1), obs_dim)
        self._blocks = self._block_view()

    def _block_view(self) -> np.ndarray:
        # Every window as a read-only strided view (N + E(H-1) - H + 1, H, obs_dim): each block
        # is H * obs_dim contiguous floats, so a gather copies whole blocks.
        row = self.padded.strides[0]
        return np.lib.stride_tricks.as_strided(
            self.padded,
            shape=(self.padded.shape[0] - self.horizon + 1, self.horizon, self.obs_dim),
            strides=(row, row, self.padded.strides[1]),
            writeable=False,
        )

    def __getstate__(self) -> dict:
        # The strided view would pickle as every window materialised: send the padded rows only.
        state = dict(self.__dict__)
        del state["_blocks"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._blocks = self._block_view()

    def __len__(self) -> int:
        return self.n_windows

    def gather(self, index: np.ndarray) -> np.ndarray:
        """Windows of the transitions ``index`` (B,) -> (B, H, obs_dim) float32, a new array."""
        return self._blocks[self.starts[np.asarray(index, dtype=np.int64)]]

    def fill(self, first: int, last: int, out: np.ndarray) -> np.ndarray:
        """Windows of transitions first..last-1 written into ``out[: last - first]``.

        Consecutive transitions of one episode have consecutive blocks, so each episode's part
        of the range is one block copy (no index arrays, no fresh allocation).
        """
        starts = self.starts[first:last]
        out = out[: last - first]
        edges = np.concatenate([[0], np.flatnonzero(np.diff(starts) != 1) + 1, [last - first]])
        for begin, end in zip(edges[:-1].tolist(), edges[1:].tolist()):
            out[begin:end] = self._blocks[starts[begin] : starts[begin] + end - begin]
        return out

    def iter_batches(
        self, batch_size: int, reuse_buffer: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream (index (B,), windows (B, H, obs_dim)) over all transitions in order.

        With ``reuse_buffer`` one array is refilled for every batch (the consumer copies what it
        keeps), so memory stays at one batch; otherwise each batch is a new array.
        """
        if batch_size < 1:
            raise ConfigError(f"windows.batch_size={batch_size} is not allowed: must be >= 1")
        buffer = np.empty((batch_size, self.horizon, self.obs_dim), dtype=np.float32)
        for first in range(0, self.n_windows, batch_size):
            last = min(first + batch_size, self.n_windows)
            index = np.arange(first, last, dtype=np.int64)
            target = buffer if reuse_buffer else np.empty_like(buffer[: last - first])
            yield index, self.fill(first, last, target)


def _positions(episode_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's position in its episode, its episode's length (both (N,)), and the episodes'
    first rows, for contiguous ``episode_ids``."""
    episode_ids = np.asarray(episode_ids)
    if episode_ids.ndim != 1 or episode_ids.size == 0:
        raise DataError(f"episode_ids must be a non-empty (N,) array, got shape {episode_ids.shape}")
    starts = np.concatenate([[0], np.flatnonzero(np.diff(episode_ids) != 0) + 1])
    lengths = np.diff(np.concatenate([starts, [episode_ids.size]]))
    return np.arange(episode_ids.size) - np.repeat(starts, lengths), np.repeat(lengths, lengths), starts


def complete_windows(episode_ids: np.ndarray, horizon: int) -> np.ndarray:
    """(N,) bool: True where the window of row t lies wholly inside its episode (t + H <= end).

    The other windows repeat the episode's last state, which shows the system frozen for the
    rest of the window. An episode shorter than H keeps its first window, so every episode
    keeps at least one. Used for ``reward.expert_windows=complete``.
    """
    position, length, starts = _positions(episode_ids)
    keep = position + horizon <= length
    keep[starts] = True
    return keep


def after_start(episode_ids: np.ndarray, skip: int) -> np.ndarray:
    """(N,) bool: True from the ``skip``-th row of each episode on; an episode no longer than
    ``skip`` keeps its last row. Used for ``reward.skip_demo_start``."""
    position, length, _ = _positions(episode_ids)
    return position >= np.minimum(skip, length - 1)


def complete_after_start(episode_ids: np.ndarray, horizon: int, skip: int) -> np.ndarray:
    """(N,) bool: :func:`complete_windows` and :func:`after_start` together. An episode that keeps
    no row under both (``skip`` beyond its last complete window) keeps its last complete window,
    so every episode still enters the index. Used when both settings are on."""
    position, length, starts = _positions(episode_ids)
    keep = complete_windows(episode_ids, horizon) & after_start(episode_ids, skip)
    empty = starts[np.add.reduceat(keep, starts) == 0]
    keep[empty + np.maximum(length[empty] - horizon, 0)] = True
    return keep


def window_of(observations: np.ndarray, episode_ids: np.ndarray, horizon: int, t: int) -> np.ndarray:
    """Reference definition of one window, written plainly (used by tests and docs)."""
    episode = episode_ids[t]
    last = int(np.flatnonzero(episode_ids == episode)[-1])
    rows = [min(t + j, last) for j in range(horizon)]
    return np.asarray(observations[rows], dtype=np.float32)


# A gather is a memory copy: a quarter CPU lets it run beside a Train worker or an actor pool
# inside a Tune trial on a small machine instead of waiting for a whole free CPU.
GATHER_CPUS = 0.25
MAX_BLOCKS = 256

_SOURCE_CACHE: dict[str, Windows | np.ndarray] = {}


def _gather_rows(batch: dict[str, np.ndarray], source_ref: ray.ObjectRef, column: str) -> dict[str, np.ndarray]:  # noqa: F821
    import ray

    key = source_ref.hex()
    if key not in _SOURCE_CACHE:  # one fetch per worker process, not per batch
        _SOURCE_CACHE.clear()
        _SOURCE_CACHE[key] = ray.get(source_ref)
    source = _SOURCE_CACHE[key]
    index = batch["data"].astype(np.int64)
    rows = source.gather(index) if isinstance(source, Windows) else source[index]
    return {"index": index, column: rows}


def to_ray_dataset(
    source: Windows | np.ndarray, column: str = "window", batch_size: int = 8192, shuffle_seed: int | None = None
) -> ray.data.Dataset:  # noqa: F821
    """A lazy ``ray.data.Dataset`` with columns ``index`` (int64) and ``column``.

    ``source`` is a :class:`Windows` (rows are (H, obs_dim) windows) or an array (rows are its
    rows, e.g. embeddings). It goes to the object store once; each block gathers its own rows,
    so no more than a block of windows exists at a time on any node.

    Without ``shuffle_seed`` rows may come in any order (read the ``index`` column). With it,
    they come in one seeded permutation of all rows, the diffusion stage's training order: the
    dataset's own context keeps order (``preserve_order``), so ``materialize``, the driver
    and the diffusion stage's Ray Train workers (which it hands these options) read that
    order. The permutation is drawn on the driver, so the dataset stays a stream that holds a
    few blocks at a time, where an all-to-all shuffle such as ``randomize_block_order``
    gathers every window of the epoch into the object store before the first batch. And each
    batch holds windows from across the dataset, where shuffled blocks give batches of windows
    from a few hundred consecutive transitions, which overlap in all but a few states.
    """
    import ray

    source_ref = ray.put(source)
    # Indices come from the driver (no read tasks, which would each want a whole CPU).
    n_blocks = int(min(MAX_BLOCKS, max(1, np.ceil(len(source) / batch_size))))
    order = np.arange(len(source), dtype=np.int64)
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(order)
    indices = np.array_split(order, n_blocks)
    dataset = ray.data.from_numpy(indices).map_batches(
        _gather_rows,
        fn_kwargs={"source_ref": source_ref, "column": column},
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=GATHER_CPUS,
    )
    if shuffle_seed is not None:
        dataset.context.execution_options.preserve_order = True  # this dataset's copy only
    return dataset
