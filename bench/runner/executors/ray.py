"""`--executor ray`: one Ray task per pair, on a running cluster (`--ray-address`) or a local instance.

Tasks return the record and the runner writes it, so results land in the runner's store. Every node
must see the output folder at the same path (a shared filesystem: θ0, tickets, mid-run checkpoints and
predictions are read and written there by the workers), and the data at the config's paths.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

from bench.core.errors import TicketbenchError
from bench.runner.executors.base import EXECUTORS, PairFn, check_importable, compute_record, one_line_reason
from bench.runner.store import RunStore


def _loopback_only() -> None:
    """Make a local Ray instance take 127.0.0.1 as its node address: Ray's services (GCS, raylet,
    agents) then listen on loopback only. Ray does this itself where it treats the machine as a
    single-node desktop (macOS, Windows: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0); `_node_ip_address=
    "127.0.0.1"` is not enough, Ray replaces a loopback address by the machine's own."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read by Ray's processes at start
    try:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # read by this process when it picks the node address
    except (ImportError, AttributeError):  # another Ray layout: the environment variable alone
        pass


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, in one line, when nothing listens at a `host:port` / `ray://host:port` address."""
    hostport = address.split("://", 1)[-1]
    if address in ("auto", "local") or ":" not in hostport:
        return
    host, _, port = hostport.rpartition(":")
    if not port.isdigit():
        raise TicketbenchError(f"Ray address '{address}': expected host:port, found port '{port}'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise TicketbenchError(f"Ray address '{address}' is unreachable: {e.strerror or e}") from None


class RayBackend:
    """Submits `compute_record` as Ray tasks: `gpus_per_run` GPUs per task on clusters with GPUs (0.5
    lets two runs share one GPU), one CPU each otherwise. A GPU task runs in a fresh worker process
    (`max_calls=1`, Ray's own default for GPU tasks): the CUDA context, the memory it cached and the device
    Ray bound through CUDA_VISIBLE_DEVICES end with the task, so the next task on that GPU starts clean
    (θ0 and the data load once per task: seconds to a minute against hours of training). CPU-only tasks
    reuse their workers (`max_calls=0`: θ0 and the data load once per worker). A task whose worker or node
    dies is retried by Ray (`max_retries`), a run that fails for its own reason is not. The workers' output
    (warnings, the loader's fallbacks) is forwarded to the runner's terminal (`log_to_driver`)."""

    def __init__(self, pair_fn: PairFn, store: RunStore, workers: int, ray_address: str,
                 gpus_per_run: float = 1.0, max_retries: int = 2):
        try:
            import ray
        except ImportError:
            raise TicketbenchError("executor 'ray' needs Ray: pip install 'ticketbench[ray]'") from None
        check_importable(pair_fn)
        self.ray, self.pair_fn, self.store = ray, pair_fn, store
        self._owns = not ray.is_initialized()
        if self._owns:
            self._connect(ray_address, workers)
        if not 0 < gpus_per_run <= 8:
            raise TicketbenchError(f"matrix.gpus_per_run: expected a number in (0, 8], found {gpus_per_run}")
        self.gpus_per_run = gpus_per_run
        gpus = ray.cluster_resources().get("GPU", 0)
        self._remote = ray.remote(num_cpus=1, num_gpus=gpus_per_run if gpus else 0, max_calls=1 if gpus else 0,
                                  max_retries=max_retries, retry_exceptions=False)(compute_record)

    @property
    def slots(self) -> int:
        """Tasks worth keeping in flight, from the cluster's resources now (an autoscaled cluster grows)."""
        resources = self.ray.cluster_resources()
        gpus = resources.get("GPU", 0)
        return max(1, int(gpus // self.gpus_per_run) if gpus else int(resources.get("CPU", 1)))

    def _connect(self, address: str, workers: int) -> None:
        common = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": True}
        try:
            if address:
                check_reachable(address)
                self.ray.init(address=address, **common)
            else:
                # Workers of a local instance import the pair function from the runner's sys.path.
                path = os.pathsep.join(p for p in sys.path if p)
                # A local instance serves this runner alone: bind every Ray service to loopback, never
                # to all interfaces (Ray's services have no authentication).
                _loopback_only()
                self.ray.init(
                    num_cpus=workers if workers > 1 else os.cpu_count(),
                    runtime_env={"env_vars": {"PYTHONPATH": path}},
                    **common,
                )
        except TicketbenchError:
            raise
        except Exception as e:  # Ray raises ConnectionError, RuntimeError, … with long messages
            raise TicketbenchError(
                f"could not start or reach Ray at '{address or 'local'}': {one_line_reason(e)}"
            ) from None

    def submit(self, pair: Any) -> Any:
        return self._remote.remote(pair, str(self.store.run_dir(pair.run_id)), self.pair_fn)

    def wait_any(self, handles: list[Any]) -> list[tuple[Any, dict | BaseException]]:
        ready, _ = self.ray.wait(handles, num_returns=1)
        results: list[tuple[Any, dict | BaseException]] = []
        for ref in ready:
            try:
                results.append((ref, self.ray.get(ref)))
            except Exception as e:  # the task's worker died; compute_record itself never raises
                results.append((ref, e))
        return results

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()


@EXECUTORS.register("ray")
def ray_backend(
    pair_fn: PairFn, store: RunStore, workers: int, ray_address: str = "", gpus_per_run: float = 1.0, **_: Any
) -> RayBackend:
    """`--executor ray [--ray-address HOST:PORT]`."""
    return RayBackend(pair_fn, store, workers, ray_address, gpus_per_run=gpus_per_run)
