"""A Dask client: a local cluster of worker processes bound to 127.0.0.1, or an existing
cluster (``dask scheduler`` / ``dask worker``) by its scheduler's address.

Dask ships no complete type information on every install: it is reached through
:func:`importlib.import_module` and typed ``Any`` here, in one place.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["open_client", "require_dask"]

_START_ENV = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"


def require_dask() -> Any:
    """The ``distributed`` module; ImportError when Dask is not installed."""
    return importlib.import_module("distributed")


@contextlib.contextmanager
def open_client(*, workers: int | None = None, scheduler: str | None = None,
                threads_per_worker: int = 1) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` if given, else to a new ``LocalCluster`` of
    ``workers`` processes (one thread each: the analysis is CPU-bound Python) that listens on
    127.0.0.1 only, without a dashboard. Closed (and the local cluster shut down) on exit."""
    dd = require_dask()
    if scheduler is not None:
        client = dd.Client(scheduler, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
        return
    dask = importlib.import_module("dask")
    # Dask's statistical profiler samples every worker thread each 10 ms: with a GIL-bound
    # task it takes ~5% of the workers' CPU, for a profile nobody looks at (no dashboard).
    config: dict[str, object] = {"distributed.worker.profile.enabled": False}
    if sys.platform == "linux" and _START_ENV not in os.environ:
        # Forked workers start with tlswatch already imported: ~0.1 s for two workers
        # instead of ~0.8 s spawning fresh interpreters (Dask's default; the variable
        # chooses another method).
        config["distributed.worker.multiprocessing-method"] = "fork"
    with dask.config.set(config):
        cluster = dd.LocalCluster(n_workers=workers or 1,
                                  threads_per_worker=threads_per_worker, processes=True,
                                  host="127.0.0.1", dashboard_address=None)
    try:
        client = dd.Client(cluster, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()
