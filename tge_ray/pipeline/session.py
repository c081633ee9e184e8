"""The Ray session of ``tge run`` and ``tge sweep``: join a cluster or start a local Ray, quietly.

``ray_session`` leaves a Ray that is already running alone (a sweep trial, a test's session);
``check_reachable`` fails in seconds where ``ray.init`` would retry an unreachable address for
minutes; ``quiet_ray_data`` keeps Ray Data's and Ray Train's own progress output off the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

from tge_ray.config import ExperimentConfig
from tge_ray.errors import TGEError
from tge_ray.faults import reclaim_signals

TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
# A driver interrupted in the middle of a stage waits up to this long for its task events (the
# state API's records) to flush before it shuts down; Ray's default, 5 s, doubled the time from
# Ctrl-C to the prompt (docs/notes/ci-time.md). The environment's own value wins.
TASK_EVENTS_FLUSH_ENV, TASK_EVENTS_FLUSH_MS = "RAY_task_events_shutdown_flush_timeout_ms", "500"


@contextlib.contextmanager
def ray_session(cfg: ExperimentConfig, verbose: bool = False) -> Iterator[None]:
    """Join ``resources.address`` or start a local Ray; leave an existing session alone.

    Quiet unless ``verbose``: Ray's own logs stay in its session's log folder
    (``/tmp/ray/session_latest/logs``); the terminal gets Ray's errors only. A local Ray that
    this starts is shut down however the block ends, an interrupt included
    (:func:`tge_ray.faults.signals_handled`); the processes of one killed with SIGKILL go with
    it (Ray ties them to the driver's life), so ``ray stop`` is never needed after ``tge run``.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    address = cfg.resources.address
    check_address(cfg)
    starts_local = starts_local_ray(cfg)
    if not verbose:
        # ray.init announces, as a warning on every run, that a cluster it starts has token
        # authentication on (Ray's default, which stays): the notice goes, the setting does not.
        logging.getLogger(TOKEN_AUTH_LOGGER).setLevel(logging.ERROR)
    os.environ.setdefault(TASK_EVENTS_FLUSH_ENV, TASK_EVENTS_FLUSH_MS)  # read by ray.init's core worker
    try:
        ray.init(
            address=address,
            num_cpus=cfg.resources.num_cpus if starts_local else None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.INFO if verbose else logging.WARNING,
            configure_logging=True,
        )
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if starts_local and "timed out during startup" in reason:  # Ray waits 30 s for its raylet
            raise TGEError(
                "the local Ray did not start within Ray's 30 s (its raylet did not answer; the machine "
                "may be overloaded): rerun when it is quieter, or start Ray once with `ray start --head` "
                "and pass resources.address=auto"
            ) from None
        if not isinstance(exc, (ConnectionError, TimeoutError, ValueError, RuntimeError)):
            raise
        raise TGEError(
            f"resources.address={address!r} does not answer ({reason}): start the cluster "
            "(`ray start --head`) or leave resources.address unset for a local Ray"
        ) from None
    reclaim_signals()  # ray.init set its own SIGTERM handler (a C-level stack dump, exit 134)
    try:
        yield
    finally:
        ray.shutdown()


def starts_local_ray(cfg: ExperimentConfig) -> bool:
    """Whether :func:`ray_session` starts a Ray of its own on this machine.

    Inside `ray job submit`, RAY_ADDRESS points ray.init at the job's cluster, which refuses
    num_cpus: a CPU count applies only to a Ray this process starts itself.
    """
    import ray

    return cfg.resources.address is None and not os.environ.get("RAY_ADDRESS") and not ray.is_initialized()


def check_address(cfg: ExperimentConfig) -> None:
    """One line, in seconds, when ``resources.address`` names a host:port where nothing listens."""
    if cfg.resources.address not in (None, "auto", "local"):
        check_reachable(cfg.resources.address)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, with one line, when nothing listens at ``[ray://]host:port``.

    ``ray.init`` itself retries an unreachable GCS for minutes before giving up.
    """
    import socket

    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise TGEError(
            f"resources.address={address!r} is not host:port (or ray://host:port, or auto): "
            "e.g. resources.address=127.0.0.1:6379"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise TGEError(
            f"resources.address={address!r} does not answer ({exc.strerror or exc}): start the "
            "cluster (`ray start --head`) or leave resources.address unset for a local Ray"
        ) from None


def quiet_ray_data(verbose: bool = False) -> None:
    """No Ray Data progress bars or execution banners (the stages show their own); Ray Data and
    Ray Train log warnings only, or everything when ``verbose``."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    level = logging.INFO if verbose else logging.WARNING
    logging.getLogger("ray.data").setLevel(level)
    logging.getLogger("ray.train").setLevel(level)
    # Ray Data warns once that its bars are off, which is what was asked for above.
    logging.getLogger("ray.data._internal.progress").setLevel(level if verbose else logging.ERROR)


def map_actor_pool(dataset: Any, fn: Any, **kwargs: Any) -> Any:
    """``dataset.map_batches(fn, **kwargs)`` for an actor pool; on a one-machine Ray, without restarts.

    Ray Data restarts a dead pool actor by default, and passes every pool actor its operator's
    state through the object store; together they make Ray print an ERROR line on the driver's
    terminal for the first pool of a run (the line also goes to Ray's log folder). On one
    machine a pool actor dies of an out-of-memory kill or a bug, which a restart repeats; on a
    cluster, where a node can go away, the pools keep Ray Data's restarts. Ray 2.60 takes
    ``max_restarts`` only as a remote argument, which it warns it will stop taking in 2.64.
    """
    import ray

    alive = [node for node in ray.nodes() if node.get("Alive")]
    if len(alive) > 1:
        return dataset.map_batches(fn, **kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return dataset.map_batches(fn, max_restarts=0, **kwargs)
