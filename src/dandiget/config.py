"""Every knob of a download in one value object (cf. s3transfer's TransferConfig)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .digests import MiB
from .retry import RetryPolicy


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return default


#: Assets in flight when ``-J`` is not given and the limit cannot adapt (a Dask executor,
#: which has its own gate), and where the adaptive limit starts.
DEFAULT_JOBS = 6


@dataclass(frozen=True)
class TransferConfig:
    """Concurrency, part sizes, timeouts and retries for one run."""

    #: Assets transferred at once (``-J N``); None: found while running (concurrency.py).
    jobs: int | None = None
    #: Entries of one Zarr transferred at once (``-J N:M``); None means dandiget's default.
    jobs_per_zarr: int | None = None
    #: Upper bound on open HTTP connections across everything (one shared budget).
    max_connections: int = 64
    #: Files at least this large are fetched as parallel Range parts.
    multipart_threshold: int = 32 * MiB
    #: Parallel Range requests for one large file (aria2c users pick -x16 for a reason:
    #: object stores cap each connection).
    parts_per_file: int = 16
    #: Read size from the socket.
    chunk_size: int = field(default_factory=lambda: _env_int("DANDI_MAX_CHUNK_SIZE", 1 * MiB))
    #: Seconds to establish a connection (a host that never answered gets two tries).
    connect_timeout: float = 10.0
    #: Seconds without a single byte before a transfer is considered stalled, at most.
    read_timeout: float = 60.0
    #: A content response that sends nothing for this long, before the run has seen how
    #: fast the content host answers, is stalled (and resumed by another request).
    stall_initial: float = 8.0
    #: Lower bound of the learnt stall deadline (20x the slowest recent wait for a body).
    stall_floor: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Entries per Zarr listing page (the server caps at 1000).
    zarr_page_size: int = 1000
    #: Assets per listing page (the server caps at 1000).
    asset_page_size: int = 1000

    @property
    def zarr_jobs(self) -> int:
        # Chunks are small: each costs a round trip more than bandwidth, so it takes many in
        # flight to hide ~20-50 ms of object-store latency (64 in flight: >2,500 chunks/s at
        # 20 ms). Bounded anyway by ``max_connections``.
        return self.jobs_per_zarr if self.jobs_per_zarr else 64
