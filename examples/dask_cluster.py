"""The same decorator on a Dask cluster: change one word, ``backend="dask"``.

Run it with ``python examples/dask_cluster.py`` (needs ``pip install "parmap-decorator[dask]"``).
It starts a small ``LocalCluster`` on 127.0.0.1, standing in for a real cluster, and hands
its client to the decorator; with a scheduler elsewhere you would write
``@parallel(backend="dask", address="tcp://scheduler:8786")`` instead.
"""

from __future__ import annotations

import logging
import math

from distributed import Client, LocalCluster

import parmap
from parmap import parallel


def simulate(seed: int) -> float:
    """A stand-in for an expensive simulation: a deterministic number from ``seed``."""
    return sum(math.sin(seed * k) / k for k in range(1, 20_000))


def main() -> None:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster) as client,
    ):
        print("Dask dashboard (with bokeh installed):", cluster.dashboard_link)
        # 1. Decorate for Dask; client= (or address=) names the cluster. Without either,
        #    parmap uses the current client (this one, since Client(...) made it the default).
        run = parallel(simulate, backend="dask", client=client)

        # 2. Every map method works unchanged; items travel in chunks, one Dask task each.
        results = run.map(range(200), progress=True)
        print(f"{len(results)} simulations, first three: {[round(r, 4) for r in results[:3]]}")

        # 3. Lazy and unordered variants, too.
        best = max(run.imap_unordered(range(200, 260)))
        print(f"best of 60 more: {best:.4f}")

        # 4. A failing item raises its own exception, with the worker's traceback and the
        #    item's index, exactly as on the process backend.
        try:
            parallel(math.sqrt, backend="dask", client=client).map([4.0, 9.0, -1.0])
        except ValueError as error:
            print("ValueError:", error, "|", *getattr(error, "__notes__", []))

        parmap.shutdown()  # parmap's pools go; the cluster is ours and closes with the with-block
        # A closing Dask worker can close its own connections under a heartbeat still in
        # flight and log a harmless traceback (a known race in distributed). Keep the
        # example's output to what it demonstrates: quiet Dask's logs, in this process
        # (scheduler, nannies) and in each worker process, for the shutdown only.
        _quiet_dask_logs()
        client.run(_quiet_dask_logs)


def _quiet_dask_logs() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


if __name__ == "__main__":  # Dask starts its worker processes with spawn
    main()
