"""Ready-made specs: a demo, dandi-cli's text/zarr test dandisets, a golden-like oracle, scale.

Each exists for a reason: ``demo_spec`` to try a downloader by hand (nested blobs, a two-part
blob, a nested Zarr); ``text_spec`` to mirror dandi-cli's own fixtures so behaviour can be
compared with the reference client; ``oracle_spec`` to mirror the dandisets the golden
responses were recorded from; ``scale_spec`` for listing/throughput benchmarks.
"""

from __future__ import annotations

import json
import struct

from dandiget.testing.model import ArchiveSpec, BlobSpec, DandisetSpec, UserSpec, ZarrSpec

MiB = 1 << 20

#: The token of the ``tester`` user every ready-made spec includes.
TESTER_TOKEN = "0123456789abcdef0123456789abcdef01234567"


def _json(obj: object) -> bytes:
    return json.dumps(obj, indent=4, sort_keys=True).encode()


def _zarray(shape: list[int], chunks: list[int], dtype: str = "<i8",
            dimension_separator: str | None = None) -> bytes:
    meta: dict[str, object] = {
        "chunks": chunks, "compressor": None, "dtype": dtype, "fill_value": 0,
        "filters": None, "order": "C", "shape": shape, "zarr_format": 2,
    }
    if dimension_separator:
        meta["dimension_separator"] = dimension_separator
    return _json(meta)


def _int64s(values: range) -> bytes:
    return struct.pack(f"<{len(values)}q", *values)


def sample_zarr_entries() -> dict[str, bytes]:
    """dandi-cli's ``zarr_dandiset``: a V2 group with two uncompressed 1000-element arrays."""
    return {
        ".zgroup": _json({"zarr_format": 2}),
        "arr_0/.zarray": _zarray([1000], [1000]),
        "arr_0/0": _int64s(range(1000)),
        "arr_1/.zarray": _zarray([1000], [1000]),
        "arr_1/0": _int64s(range(1000, 0, -1)),
    }


def text_spec() -> ArchiveSpec:
    """000001: dandi-cli's ``text_dandiset`` files; 000002: its ``zarr_dandiset``."""
    return ArchiveSpec(
        dandisets=[
            DandisetSpec(identifier="000001", name="Text dandiset", assets=[
                BlobSpec("file.txt", b"This is test text.\n"),
                BlobSpec("subdir1/apple.txt", b"Apple\n"),
                BlobSpec("subdir2/banana.txt", b"Banana\n"),
                BlobSpec("subdir2/coconut.txt", b"Coconut\n"),
            ]),
            DandisetSpec(identifier="000002", name="Zarr dandiset", assets=[
                ZarrSpec("sample.zarr", sample_zarr_entries()),
            ]),
        ],
        users=[UserSpec("tester", TESTER_TOKEN)],
    )


def ome_zarr_entries() -> dict[str, bytes]:
    """A small OME-NGFF-like pyramid: nested chunks and ``.zattrs`` at several levels."""
    entries: dict[str, bytes] = {
        ".zgroup": _json({"zarr_format": 2}),
        ".zattrs": _json({"multiscales": [{"version": "0.4", "datasets": [
            {"path": "0"}, {"path": "1"}], "axes": [{"name": "z"}, {"name": "y"}, {"name": "x"}]}]}),
        "0/.zarray": _zarray([4, 64, 64], [1, 32, 32], "<u2", "/"),
        "0/.zattrs": _json({"level": 0}),
        "1/.zarray": _zarray([2, 32, 32], [1, 32, 32], "<u2", "/"),
        "1/.zattrs": _json({"level": 1}),
        "labels/.zgroup": _json({"zarr_format": 2}),
        "labels/.zattrs": _json({"labels": []}),
        "labels/empty": b"",
    }
    for z in range(4):
        for y in range(2):
            for x in range(2):
                entries[f"0/{z}/{y}/{x}"] = struct.pack("<1024H", *((z * 7 + y * 3 + x + i) % 65536
                                                                     for i in range(1024)))
    for z in range(2):
        entries[f"1/{z}/0/0"] = struct.pack("<1024H", *((z + i) % 65536 for i in range(1024)))
    return entries


def demo_spec() -> ArchiveSpec:
    """A small but complete dandiset 000001 with a published version (~72 MiB generated)."""
    readme = BlobSpec("README.md", b"# Demo dandiset\n\nServed by dandiget.testing.\n")
    ses1 = BlobSpec("sub-01/sub-01_ses-01_ecephys.nwb", size=300_000, seed=1)
    return ArchiveSpec(
        dandisets=[DandisetSpec(
            identifier="000001",
            name="Demo dandiset",
            assets=[
                readme,
                ses1,
                BlobSpec("sub-01/sub-01_ses-02_ecephys.nwb", size=1_200_000, seed=2),
                BlobSpec("sub-02/sub-02_ses-01_ecephys.nwb", size=70 * MiB, seed=3),
                BlobSpec("sub-02/notes with space & amp.txt", b"a path with a space and &\n"),
                BlobSpec("derivatives/deep/nested/dir/readme.txt", b"deeply nested\n"),
                ZarrSpec("sub-01/sub-01_sample.ome.zarr", ome_zarr_entries()),
            ],
            published={"0.240101.1200": [readme, ses1]},
            owners=["tester"],
        )],
        users=[UserSpec("tester", TESTER_TOKEN)],
    )


def _session(n: int, hours: int = 0) -> dict[str, object]:
    return {"name": "Acquisition session", "endDate": f"2024-01-02T0{3 + hours}:04:0{5 + n}Z",
            "schemaKey": "Session", "startDate": "2024-01-02T03:04:05Z",
            "description": f"oracle session {n}"}


def oracle_spec() -> ArchiveSpec:
    """Dandisets shaped like those the golden responses were recorded from.

    000001: 7 blobs (one 84,173,800-byte two-part blob, a path with a space and ``&``, nested
    dirs) plus a 21-file zarr with a zero-byte file; 000002: the same blobs, published.
    """
    readme = BlobSpec("derivatives/deep/nested/dir/readme.txt", b"deeply nested readme file\n\n")
    ses1 = BlobSpec("sub-01/sub-01_ses-1_ecephys.nwb", size=181_800, seed=11,
                    metadata={"wasGeneratedBy": [_session(1)]})
    ses2 = BlobSpec("sub-01/sub-01_ses-2_ecephys.nwb", size=189_800, seed=12,
                    metadata={"wasGeneratedBy": [_session(2)]})
    behavior = BlobSpec("sub-02/sub-02_ses-1_behavior.nwb", size=177_800, seed=13,
                        metadata={"wasGeneratedBy": [_session(1)]})
    notes = BlobSpec("sub-03/notes with space & amp.txt", b"path with a space and an ampersand\n")
    random_bin = BlobSpec("sub-03/random.bin", size=300_000, seed=14)
    big = BlobSpec("sub-04/sub-04_ses-1_ecephys.nwb", size=84_173_800, seed=15,
                   metadata={"wasGeneratedBy": [_session(1, 2)]})
    zarr: dict[str, bytes] = {
        ".zattrs": b'{"description": "oracle zarr"}\n\n\n\n',
        ".zgroup": b'{\n    "zarr_format": 2\n}',
        "data/.zarray": _zarray([4, 100], [1, 50], "<i8")[:213],
        "data/.zattrs": b"{}",
        "labels/.zattrs": b"{}",
        "labels/.zgroup": b'{\n    "zarr_format": 2\n}',
        "labels/empty_file": b"",
        "labels/mask/.zarray": _zarray([3], [1], "|u1")[:195],
        "labels/mask/.zattrs": b"{}",
        "labels/notes.txt": b"label notes\n\n",
    }
    for i in range(4):
        for j in range(2):
            zarr[f"data/{i}/{j}"] = _int64s(range(i * 100 + j * 50, i * 100 + j * 50 + 50))
    for i in range(3):
        zarr[f"labels/mask/{i}"] = bytes([i, i + 1, i + 2])
    blobs = [notes, readme, behavior, random_bin, ses1, ses2, big]
    meta = {"contributor": [{"name": "User, Super", "email": "admin@nil.nil",
                             "roleName": ["dcite:ContactPerson"], "schemaKey": "Person",
                             "affiliation": [], "includeInCitation": True}]}
    return ArchiveSpec(
        dandisets=[
            DandisetSpec(
                identifier="000001", name="Oracle test dandiset",
                assets=[ses2, ses1, readme, behavior, notes, random_bin, big,
                        ZarrSpec("sub-05/sub-05_sample.zarr", zarr)],
                metadata={**meta, "license": ["spdx:CC0-1.0"]},
            ),
            DandisetSpec(
                identifier="000002", name="Oracle published dandiset",
                assets=list(blobs), published={"0.261125.2202": list(blobs)}, metadata=meta,
            ),
        ],
        users=[UserSpec("admin", TESTER_TOKEN, admin=True, email="admin@nil.nil")],
    )


def scale_spec(assets: int = 100_000, zarr_entries: int = 0, *, asset_size: int = 64,
               entry_size: int = 64) -> ArchiveSpec:
    """Scale: dandiset 000100 with ``assets`` small generated blobs, 000101 with a big zarr."""
    dandisets = []
    if assets:
        dandisets.append(DandisetSpec.generated("000100", assets, asset_size, seed=100))
    if zarr_entries:
        dandisets.append(DandisetSpec(identifier="000101", name="Big zarr", assets=[
            ZarrSpec("big.zarr", {".zgroup": _json({"zarr_format": 2})},
                     generated=(zarr_entries, entry_size, 7))]))
    return ArchiveSpec(dandisets=dandisets, users=[UserSpec("tester", TESTER_TOKEN)])
