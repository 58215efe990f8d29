"""The reference implementations the server side uses, wrapped for differential tests.

dandischema's ``PartGenerator``/``DandiETag`` decide the part layout and the dandi-etag of
every blob the Archive stores; zarr-checksum computes ``dandi:dandi-zarr-checksum``. Both
are declared in the ``test`` extra, so these tests always run (an ImportError is a failure).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

from dandischema.digests.dandietag import DandiETag, PartGenerator
from hypothesis import strategies as st
from zarr_checksum.tree import ZarrChecksumTree

MiB = 1 << 20
S3_PART = 64 * MiB
S3_MAX_PARTS = 10_000
TiB = 1 << 40

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"


@cache
def tiny_generator(part_size: int, max_parts: int) -> type[PartGenerator]:
    """dandischema's own layout code with its constants shrunk (it reads them from ``cls``)."""
    return type(f"Tiny{part_size}x{max_parts}", (PartGenerator,), {
        "DEFAULT_PART_SIZE": part_size, "MAX_PARTS": max_parts, "MIN_PART_SIZE": 1})


def reference_layout(size: int, part_size: int | None = None,
                     max_parts: int | None = None) -> list[tuple[int, int]]:
    """``(offset, length)`` of every part, as dandischema lays them out."""
    gen = PartGenerator if part_size is None else tiny_generator(part_size, max_parts or S3_MAX_PARTS)
    return [(p.offset, p.size) for p in gen.for_file_size(size)]


def reference_summary(size: int) -> tuple[int, int, int]:
    """``(number of parts, length of the first, length of the last)`` in O(1)."""
    g = PartGenerator.for_file_size(size)
    return g.part_qty, g.initial_part_size, g.final_part_size


def reference_etag(data: bytes, part_size: int | None = None,
                   max_parts: int | None = None) -> str:
    gen = PartGenerator if part_size is None else tiny_generator(part_size, max_parts or S3_MAX_PARTS)
    etag = DandiETag(len(data), part_gen=gen)
    etag.partial_update(data)
    return etag.as_str()


def reference_zarr_checksum(files: Iterable[tuple[str, str, int]]) -> str:
    tree = ZarrChecksumTree()
    for key, md5, size in files:
        tree.add_leaf(Path(key), size, md5)
    return tree.process().digest


def boundary_sizes() -> Iterator[int]:
    """Every size next to a part boundary of the Archive's layout, up to 10,000 parts, then
    next to the boundaries of the ``ceil(size / 10000)`` regime, up to 5 TiB."""
    for k in range(1, S3_MAX_PARTS + 1):
        for d in (-1, 0, 1):
            yield k * S3_PART + d
    # past the switch the part size is ceil(size / 10000): size = 10000 * p + d
    for p in range(S3_PART - 2, S3_PART + 3):
        for d in (-1, 0, 1):
            yield S3_MAX_PARTS * p + d
    rng = random.Random(14)
    for _ in range(2000):
        p = rng.randrange(S3_PART, (5 * TiB) // S3_MAX_PARTS)
        for d in (-1, 0, 1):
            size = S3_MAX_PARTS * p + d
            if size <= 5 * TiB:
                yield size
    for d in range(-3, 1):
        yield 5 * TiB + d


def golden_zarr() -> tuple[list[tuple[str, str, int]], str]:
    """The recorded listing of a real server's Zarr, and the checksum that server computed."""
    listing = json.loads((GOLDEN / "api_zarr_ID_files.json").read_text())
    assert listing["next"] is None  # the whole Zarr is on this one page
    files = [(r["Key"], r["ETag"], r["Size"]) for r in listing["results"]]
    checksum = json.loads((GOLDEN / "api_zarr_ID.json").read_text())["checksum"]
    return files, checksum


@st.composite
def tiny_layouts(draw: st.DrawFn) -> tuple[int, int, int]:
    """``(size, part size, max parts)``: any size, or one where the default part size needs
    just about ``max_parts`` parts, where the two clauses of the rule meet."""
    part_size, max_parts = draw(st.integers(1, 64)), draw(st.integers(1, 40))
    size = draw(st.one_of(
        st.integers(0, 4000),
        st.integers(max(0, part_size * (max_parts - 1) - 1), part_size * max_parts + 1)))
    return size, part_size, max_parts
