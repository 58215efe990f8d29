"""dandiget.digests against the reference implementations the Archive itself uses.

Layouts are compared for every size next to a part boundary up to the 10,000-part limit and
beyond (no bytes allocated); digests are compared on real bytes with tiny part sizes, so small
inputs have many parts and reach the ``max_parts`` clause; Zarr checksums on generated trees
and on a checksum recorded from a real server.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from zarr_checksum import compute_zarr_checksum
from zarr_checksum.generators import yield_files_local

from dandiget.digests import (
    DandiETag,
    PartRule,
    ZarrEntryDigest,
    dandi_etag_bytes,
    etag_part_size,
    etag_parts,
    local_zarr_checksum,
    zarr_checksum,
)

from .reference_impls import (
    S3_MAX_PARTS,
    S3_PART,
    TiB,
    boundary_sizes,
    golden_zarr,
    reference_etag,
    reference_layout,
    reference_summary,
    reference_zarr_checksum,
    tiny_layouts,
)

# ------------------------------------------------------------------ part layout (no bytes)


def test_part_size_at_every_boundary_matches_dandischema() -> None:
    sizes = list(boundary_sizes())
    assert len(sizes) > 36_000
    bad = []
    for size in sizes:
        count, first, last = reference_summary(size)
        p = etag_part_size(size)
        # dandischema reports a one-part object's part size as the object's size
        ours = (-(-size // p), p if count > 1 else size, size - (-(-size // p) - 1) * p)
        if ours != (count, first, last):
            bad.append((size, ours, (count, first, last)))
    assert bad[:5] == []


@pytest.mark.parametrize("size", sorted({
    1, S3_PART - 1, S3_PART, S3_PART + 1, 2 * S3_PART + 1,
    # the switch to ceil(size / 10000): 64 MiB would need exactly 10,000 parts, or 9,999
    (S3_MAX_PARTS - 1) * S3_PART - 1, (S3_MAX_PARTS - 1) * S3_PART,
    (S3_MAX_PARTS - 1) * S3_PART + 1, S3_MAX_PARTS * S3_PART - 1, S3_MAX_PARTS * S3_PART,
    S3_MAX_PARTS * S3_PART + 1, S3_MAX_PARTS * (S3_PART + 1) - 1,
    S3_MAX_PARTS * (S3_PART + 1) + 1, 5 * TiB - 1, 5 * TiB,
}))
def test_full_layout_matches_dandischema(size: int) -> None:
    ours = [(p.offset, p.length) for p in etag_parts(size)]
    assert ours == reference_layout(size)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(0, 5 * TiB),
                 st.integers(1, S3_MAX_PARTS).flatmap(
                     lambda k: st.integers(k * S3_PART - 2, k * S3_PART + 2))))
def test_layout_matches_dandischema_anywhere(size: int) -> None:
    event("one part" if size <= S3_PART else "many parts")
    count = reference_summary(size)[0]
    if count <= 200:  # the full list for small counts, the O(1) summary for the rest
        assert [(p.offset, p.length) for p in etag_parts(size)] == reference_layout(size)
    p = etag_part_size(size) if size else 0
    assert count == (-(-size // p) if size else 0)


def test_too_large_is_refused_by_both() -> None:
    with pytest.raises(ValueError):
        reference_layout(5 * TiB + 1)
    with pytest.raises(ValueError):
        etag_parts(5 * TiB + 1)


# ------------------------------------------------------------------ dandi-etag on real bytes


@settings(max_examples=400, deadline=None)
@given(tiny_layouts(), st.randoms(use_true_random=False),
       st.lists(st.integers(1, 500), max_size=10))
def test_etag_with_tiny_parts_matches_dandischema(layout: tuple[int, int, int],
                                                  rnd: random.Random, cuts: list[int]) -> None:
    size, part_size, max_parts = layout
    data = rnd.randbytes(size)
    r = PartRule(part_size, max_parts)
    nparts = len(etag_parts(size, r))
    event("max_parts clause" if size and -(-size // part_size) >= max_parts
          else "default part size")
    event(f"{min(nparts, 3)}{'+' if nparts >= 3 else ''} parts")
    expected = reference_etag(data, part_size, max_parts)
    assert [(p.offset, p.length) for p in etag_parts(size, r)] == reference_layout(
        size, part_size, max_parts)
    assert dandi_etag_bytes(data, r) == expected
    h = DandiETag(size, r)  # streamed in arbitrary pieces across part boundaries
    pos = 0
    for c in cuts:
        h.update(data[pos:pos + c])
        pos += c
    h.update(data[pos:])
    assert h.hexdigest() == expected


def test_etag_seeded_sizes_around_tiny_boundaries() -> None:
    rng = random.Random(3)
    checked = 0
    for part_size in (1, 2, 3, 7, 16, 64):
        for max_parts in (1, 2, 3, 5, 10, 17):
            for k in range(1, 3 * max_parts + 2):
                for d in (-1, 0, 1):
                    size = max(0, k * part_size + d)
                    data = rng.randbytes(size)
                    ours = dandi_etag_bytes(data, PartRule(part_size, max_parts))
                    assert ours == reference_etag(data, part_size, max_parts), (
                        size, part_size, max_parts)
                    checked += 1
    assert checked > 1000


def test_real_two_part_etag_matches_dandischema() -> None:
    data = random.Random(1).randbytes(S3_PART + 12345)
    assert dandi_etag_bytes(data) == reference_etag(data)
    assert dandi_etag_bytes(data).endswith("-2")


# ------------------------------------------------------------------ Zarr checksum


names = st.sampled_from(["a", "b", "A", "a.b", "a-b", "a_b", "0", "1", "10", "2", ".zarray",
                         ".zattrs", "é", "z z"])
trees = st.lists(st.lists(names, min_size=1, max_size=5).map("/".join), unique=True,
                 max_size=40)


def _files(keys: list[str], rnd: random.Random) -> list[tuple[str, str, int]]:
    keys = [k for k in keys if not any(m.startswith(k + "/") for m in keys)]
    return [(k, hashlib.md5(rnd.randbytes(8)).hexdigest(), rnd.randrange(0, 10**12))
            for k in keys]


@settings(max_examples=300, deadline=None)
@given(trees, st.randoms(use_true_random=False))
def test_zarr_checksum_matches_zarr_checksum(keys: list[str], rnd: random.Random) -> None:
    files = _files(keys, rnd)
    event("nested" if any("/" in k for k, _, _ in files) else "flat")
    expected = reference_zarr_checksum(files)
    assert zarr_checksum(files) == expected
    assert zarr_checksum([ZarrEntryDigest(*f) for f in reversed(files)]) == expected


def test_local_tree_with_empty_folders_matches_zarr_checksum(tmp_path: Path) -> None:
    rng = random.Random(7)
    root = tmp_path / "x.zarr"
    for i in range(60):
        depth = rng.randrange(0, 4)
        parts = [rng.choice(["0", "1", "a", "B", "c.d"]) for _ in range(depth)]
        folder = root.joinpath(*parts)
        if any(p.is_file() for p in [root.joinpath(*parts[:j]) for j in range(1, depth + 1)]):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        f = folder / f"f{i}"
        if not f.exists():
            f.write_bytes(rng.randbytes(rng.randrange(0, 300)))
    (root / "empty" / "nested" / "deeper").mkdir(parents=True)  # no files: not in the sum
    (root / "a" / "empty").mkdir(parents=True, exist_ok=True)
    expected = compute_zarr_checksum(yield_files_local(root)).digest
    assert local_zarr_checksum(root) == expected
    assert int(expected.split("-")[1]) == sum(len(fs) for _, _, fs in os.walk(root))


def test_empty_zarr_matches_zarr_checksum() -> None:
    assert zarr_checksum([]) == reference_zarr_checksum([])


def test_recorded_server_zarr_checksum() -> None:
    """A real dandi-archive computed this checksum for the Zarr whose listing it served."""
    files, checksum = golden_zarr()
    assert len(files) == 21 and checksum.endswith("-21--3714")
    assert reference_zarr_checksum(files) == checksum
    assert zarr_checksum(files) == checksum
