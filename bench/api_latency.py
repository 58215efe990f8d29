"""What the real DANDI API costs in time, added to the test archive's API in ``s3like``.

The test archive answers in well under a millisecond; api.dandiarchive.org does not. A
protocol that adds latency to the content host only favours a client that talks to the
API a lot less (or a lot more) than it would have to pay for in real life. The model:

* ``request`` (50 ms) on every API request: a round trip to the archive plus Django's
  fixed cost; the API answers simple requests in tens to hundreds of milliseconds.
* ``page`` (0.55 s) more on every page of ``/assets/``: the database query behind a page
  of a large dandiset (dandi-archive#1891: pages of a large dandiset take up to ~1 s
  whatever the page number; dandi-archive#1907: ``page_size`` 100 and 1000 take about the
  same time without metadata).
* ``row_metadata`` (0.73 ms) per asset on a ``metadata=true`` page, ``row`` (0.05 ms) per
  asset on a page without metadata. dandisets#236 timed pages of 000026 with
  ``metadata=1``: 0.72 s for 100 assets, 1.38 s for 1,000 (median of several ``curl``
  runs, each with its own TCP and TLS set-up): 0.73 ms per extra row, and 0.05 + 0.55 +
  0.073 = 0.67 s and 0.05 + 0.55 + 0.73 = 1.33 s here.
* ``zarr_page`` (0.15 s) more on every page of ``/zarr/{id}/files/`` (without
  ``download=true``): the archive proxies one S3 ``ListObjectsV2`` of up to 1,000 keys.
  An estimate (S3 lists answer in ~0.1-0.3 s), not a measurement.

All of it is a wait (``asyncio.sleep`` before the answer), not CPU: it models a remote
server, and the test archive's own CPU cost comes on top. Not modelled: the real server
slows down under many parallel page requests (dandi-archive#1891 saw 12 s), which favours
clients that fetch many pages at once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from dandiget.testing.faults import FaultSet, Plan


@dataclass(frozen=True)
class ApiCost:
    request: float = 0.050
    page: float = 0.55
    row_metadata: float = 0.00073
    row: float = 0.00005
    zarr_page: float = 0.15

    def describe(self) -> str:
        return (f"{1000 * self.request:g} ms per API request; +{self.page:g} s per asset page, "
                f"+{1000 * self.row_metadata:g} ms per asset with metadata=true "
                f"(+{1000 * self.row:g} ms without); +{self.zarr_page:g} s per Zarr listing "
                "page")


S3LIKE = ApiCost()

_ASSETS = re.compile(r"^/api/dandisets/(\d+)/versions/([^/]+)/assets/$")
_ZARR_FILES = re.compile(r"^/api/zarr/[^/]+/files/?$")
_TRUE = {"true", "True", "1", "yes", "on", "t", "y"}


def request_cost(cost: ApiCost, target: str, count: Callable[[str, str], int]) -> float:
    """Seconds the real API would take for ``target`` (``path?query``).

    ``count(dandiset, version)``: how many assets that version has (for the rows of the
    last page).
    """
    path, _, query = target.partition("?")
    q = parse_qs(query)
    seconds = cost.request
    m = _ASSETS.match(path)
    if m:
        try:
            size = min(1000, max(1, int(q.get("page_size", ["100"])[0])))
            page = max(1, int(q.get("page", ["1"])[0]))
        except ValueError:
            size, page = 100, 1
        rows = max(0, min(size, count(m.group(1), m.group(2)) - (page - 1) * size))
        meta = q.get("metadata", ["false"])[0] in _TRUE
        seconds += cost.page + rows * (cost.row_metadata if meta else cost.row)
    elif _ZARR_FILES.match(path) and q.get("download", ["false"])[0] not in _TRUE:
        seconds += cost.zarr_page
    return seconds


class ApiLatency(FaultSet):
    """The archive's fault set, plus the modelled latency on every API request."""

    def __init__(self, cost: ApiCost, count: Callable[[str, str], int]) -> None:
        super().__init__()
        self.cost = cost
        self.count = count

    def plan(self, host: str, method: str, target: str,
             range_header: str | None = None) -> Plan:
        base = super().plan(host, method, target, range_header)
        if host != "api":
            return base
        extra = request_cost(self.cost, target, self.count)
        return dataclasses.replace(base, latency=base.latency + extra)
