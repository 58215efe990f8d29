"""dandi-etag and Zarr checksum: known vectors, part arithmetic, invariants."""

from __future__ import annotations

import hashlib
import itertools
import math
import random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dandiget.digests import (
    EMPTY_ETAG,
    EMPTY_ZARR_CHECKSUM,
    DandiETag,
    MiB,
    PartRule,
    TiB,
    ZarrEntryDigest,
    dandi_etag_bytes,
    etag_part_size,
    etag_parts,
    file_dandi_etag,
    local_zarr_checksum,
    parse_zarr_checksum,
    zarr_checksum,
)


def reference_etag(data: bytes, part: int) -> str:
    """Straightforward multipart md5-of-md5s, independent of the implementation."""
    if not data:
        return EMPTY_ETAG
    digests = [hashlib.md5(data[i:i + part]).digest() for i in range(0, len(data), part)]
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def test_known_vectors() -> None:
    assert dandi_etag_bytes(b"") == "d41d8cd98f00b204e9800998ecf8427e-0"
    assert dandi_etag_bytes(b"abc") == "af5da9f45af7a300e3aded972f8ff687-1"
    assert zarr_checksum([]) == EMPTY_ZARR_CHECKSUM == "481a2f77ab786a0f45aafd5db0971caa-0--0"
    entries = [("a/b", hashlib.md5(b"abc").hexdigest(), 3), ("c", hashlib.md5(b"x").hexdigest(), 1)]
    assert zarr_checksum(entries) == "93591f08fda124ffd9405772819bfb1b-2--4"


@pytest.mark.parametrize(("size", "nparts", "first", "last"), [
    (1, 1, 1, 1),
    (64 * MiB, 1, 64 * MiB, 64 * MiB),
    (64 * MiB + 1, 2, 64 * MiB, 1),
    (9_999 * 64 * MiB + 1, 10_000, 67_102_154, 67_093_291),
    (5 * TiB, 10_000, 549_755_814, 549_754_694),
])
def test_part_layout(size: int, nparts: int, first: int, last: int) -> None:
    parts = etag_parts(size)
    assert len(parts) == nparts
    assert parts[0].length == first and parts[-1].length == last
    assert sum(p.length for p in parts) == size
    assert all(b.offset == a.end for a, b in itertools.pairwise(parts))


def test_too_large() -> None:
    with pytest.raises(ValueError, match="larger than"):
        etag_part_size(5 * TiB + 1)


@given(st.integers(min_value=1, max_value=5 * TiB))
def test_part_size_rule(size: int) -> None:
    p = etag_part_size(size)
    n = math.ceil(size / p)
    assert n <= 10_000
    assert p == 64 * MiB or math.ceil(size / (64 * MiB)) >= 10_000


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 3000), st.randoms(use_true_random=False), st.integers(1, 97),
       st.lists(st.integers(1, 700), max_size=8))
@example(1000, random.Random(0), 7, [3, 10, 500])
def test_streaming_matches_reference(size: int, rnd: random.Random, part: int,
                                     cuts: list[int]) -> None:
    # a tiny part size: a few hundred bytes span many parts, and the cuts of ``update``
    # fall both inside parts and across their boundaries
    data = rnd.randbytes(size)
    rule = PartRule(part_size=part, max_parts=10**9)
    assert len(etag_parts(size, rule)) == math.ceil(size / part)
    h = DandiETag(size, rule)
    pos = 0
    for c in cuts:
        h.update(data[pos:pos + c])
        pos += c
    h.update(data[pos:])
    expected = reference_etag(data, part)
    assert expected.endswith(f"-{math.ceil(size / part)}")
    assert h.hexdigest() == expected
    assert dandi_etag_bytes(data, rule) == expected


def test_streaming_across_real_parts(tmp_path) -> None:
    rng = random.Random(1)
    data = rng.randbytes(64 * MiB + 12345)
    p = tmp_path / "f"
    p.write_bytes(data)
    expected = reference_etag(data, 64 * MiB)
    assert expected.endswith("-2")
    assert file_dandi_etag(p) == expected
    h = DandiETag(len(data))
    for i in range(0, len(data), 3 * MiB + 7):
        h.update(data[i:i + 3 * MiB + 7])
    assert h.hexdigest() == expected


def test_streaming_rejects_overflow_and_short() -> None:
    h = DandiETag(3)
    with pytest.raises(ValueError):
        h.update(b"abcd")
    h = DandiETag(3)
    h.update(b"ab")
    with pytest.raises(ValueError):
        h.hexdigest()


keys = st.lists(
    st.lists(st.sampled_from(["a", "b", "c", ".zattrs", "0", "1"]), min_size=1, max_size=3)
    .map("/".join), unique=True, max_size=12)


@given(keys, st.randoms())
def test_zarr_checksum_order_independent(names: list[str], rnd: random.Random) -> None:
    # a key cannot be both a file and a folder
    names = [n for n in names if not any(m.startswith(n + "/") for m in names)]
    entries = [ZarrEntryDigest(n, hashlib.md5(n.encode()).hexdigest(), len(n)) for n in names]
    shuffled = entries[:]
    rnd.shuffle(shuffled)
    value = zarr_checksum(entries)
    assert value == zarr_checksum(shuffled)
    _, count, size = parse_zarr_checksum(value)
    assert count == len(entries) and size == sum(e.size for e in entries)


def test_local_zarr_checksum_skips_vcs(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").write_bytes(b"abc")
    (tmp_path / "c").write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_bytes(b"junk")
    (tmp_path / ".gitattributes").write_bytes(b"junk")
    assert local_zarr_checksum(tmp_path) == "93591f08fda124ffd9405772819bfb1b-2--4"
