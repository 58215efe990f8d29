"""The benchmark corpus: one dandiset per scenario, full size or smoke size.

Both the harness (``run.py``) and the archive launcher (``archive_server.py``) import this
module, so the two processes agree on every path, size and seed. Object ids are derived
from the spec by ``dandiget.testing``, so a corpus materialised once can be served again by
any later archive process built from the same spec.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class Sizes:
    """How big each dataset is (``full`` is what the issue asks for, ``smoke`` is for CI)."""

    big_size: int
    files_count: int
    files_size: int
    zarr_count: int
    zarr_entry_size: int
    plan_count: int
    zarr_small_count: int  # the Zarr dandi-cli is compared on (3 runs must fit in minutes)


FULL = Sizes(big_size=2 * GiB, files_count=1000, files_size=MiB, zarr_count=50_000,
             zarr_entry_size=16 * 1024, plan_count=100_000, zarr_small_count=5_000)
SMOKE = Sizes(big_size=8 * MiB, files_count=20, files_size=64 * 1024, zarr_count=200,
              zarr_entry_size=16 * 1024, plan_count=1000, zarr_small_count=60)
KINDS = {"full": FULL, "smoke": SMOKE}


@dataclass(frozen=True)
class ScalingSizes:
    """The multi-node scaling corpus (``scaling.py``): large files and one Zarr."""

    large_count: int
    large_size: int
    zarr_count: int
    zarr_entry_size: int


# 1 GiB of large files and 1.3 GB of Zarr: ~40-55 s for one worker capped at 25 MB/s.
SCALING_KINDS = {
    "scaling": ScalingSizes(large_count=8, large_size=128 * MiB, zarr_count=20_000,
                            zarr_entry_size=64 * 1024),
    "scaling-smoke": ScalingSizes(large_count=4, large_size=4 * MiB, zarr_count=400,
                                  zarr_entry_size=16 * 1024),
}
ALL_KINDS = (*KINDS, *SCALING_KINDS)

#: dataset name -> dandiset identifier
DANDISETS = {"big": "000001", "files": "000002", "zarr": "000003", "plan": "000004",
             "zarr-small": "000005"}
#: the scaling corpus: dataset name -> dandiset identifier
SCALING_DANDISETS = {"large": "000011", "zarr": "000012"}
BIG_PATH = "sub-01/sub-01_ses-01_ecephys.nwb"
ZARR_PATH = "sub-01/sub-01_ses-01_image.ome.zarr"


def _files_path(i: int) -> str:
    # 20 subjects x 5 sessions x 10 files: nested folders, as a real dandiset would be.
    return f"sub-{i // 50:02d}/ses-{(i // 10) % 5:02d}/sub-{i // 50:02d}_run-{i:04d}_ecephys.nwb"


def _large_path(i: int) -> str:
    return f"sub-{i:02d}/sub-{i:02d}_ses-01_ecephys.nwb"


def build_scaling_spec(kind: str) -> Any:
    """The scaling corpus ``kind`` (``scaling``/``scaling-smoke``)."""
    from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, ZarrSpec

    s = SCALING_KINDS[kind]
    return ArchiveSpec(dandisets=[
        DandisetSpec(identifier=SCALING_DANDISETS["large"], name="Scaling: large files",
                     assets=[BlobSpec(_large_path(i), size=s.large_size, seed=2000 + i)
                             for i in range(s.large_count)]),
        DandisetSpec(identifier=SCALING_DANDISETS["zarr"], name="Scaling: one Zarr", assets=[
            ZarrSpec(ZARR_PATH, {".zgroup": b'{\n    "zarr_format": 2\n}'},
                     generated=(s.zarr_count, s.zarr_entry_size, 13))]),
    ])


def build_spec(kind: str) -> Any:
    """The :class:`dandiget.testing.ArchiveSpec` of corpus ``kind`` (``full``/``smoke``,
    or a scaling corpus)."""
    from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, ZarrSpec

    if kind in SCALING_KINDS:
        return build_scaling_spec(kind)
    s = KINDS[kind]
    return ArchiveSpec(dandisets=[
        DandisetSpec(identifier=DANDISETS["big"], name="Benchmark: one large file", assets=[
            BlobSpec(BIG_PATH, size=s.big_size, seed=1)]),
        DandisetSpec(identifier=DANDISETS["files"], name="Benchmark: many files", assets=[
            BlobSpec(_files_path(i), size=s.files_size, seed=1000 + i)
            for i in range(s.files_count)]),
        DandisetSpec(identifier=DANDISETS["zarr"], name="Benchmark: one large Zarr", assets=[
            ZarrSpec(ZARR_PATH, {".zgroup": b'{\n    "zarr_format": 2\n}'},
                     generated=(s.zarr_count, s.zarr_entry_size, 7))]),
        DandisetSpec.generated(DANDISETS["plan"], s.plan_count, 1024, seed=5,
                               name="Benchmark: many assets (listing)"),
        DandisetSpec(identifier=DANDISETS["zarr-small"], name="Benchmark: a smaller Zarr",
                     assets=[ZarrSpec(ZARR_PATH, {".zgroup": b'{\n    "zarr_format": 2\n}'},
                                      generated=(s.zarr_small_count, s.zarr_entry_size, 11))]),
    ])


def spec_hash(kind: str) -> str:
    """Names the cache directory of a corpus (its validity is checked on every start)."""
    h = hashlib.sha1(kind.encode())
    h.update(json.dumps(build_spec(kind).to_dict(), sort_keys=True).encode())
    return h.hexdigest()[:12]
