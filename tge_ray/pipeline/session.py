"""The Ray session of ``tge run`` and ``tge sweep``: join a cluster or start a local Ray, quietly.

``ray_session`` leaves a Ray that is already running alone (a sweep trial, a test's session);
``check_reachable`` fails in seconds where ``ray.init`` would retry an unreachable address for
minutes; ``quiet_ray_data`` keeps Ray Data's and Ray Train's own progress output off the terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from tge_ray.config import ExperimentConfig
from tge_ray.errors import TGEError


@contextlib.contextmanager
def ray_session(cfg: ExperimentConfig) -> Iterator[None]:
    """Join ``resources.address`` or start a local Ray; leave an existing session alone."""
    import ray

    if ray.is_initialized():
        yield
        return
    address = cfg.resources.address
    if address not in (None, "auto", "local"):
        check_reachable(address)
    # Inside `ray job submit`, RAY_ADDRESS points ray.init at the job's cluster, which refuses
    # num_cpus: a CPU count applies only to a Ray this process starts itself.
    starts_local = address is None and not os.environ.get("RAY_ADDRESS")
    try:
        ray.init(
            address=address,
            num_cpus=cfg.resources.num_cpus if starts_local else None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TGEError(
            f"resources.address={address!r} does not answer ({reason}): start the cluster "
            "(`ray start --head`) or leave resources.address unset for a local Ray"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


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


def quiet_ray_data() -> None:
    """No Ray Data progress bars or execution banners; Ray Data and Ray Train log warnings only."""
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.train").setLevel(logging.WARNING)
