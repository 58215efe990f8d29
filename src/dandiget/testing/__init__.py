"""A faithful, DANDI-compatible test archive: API host + S3-like content host on 127.0.0.1.

Describe the content with a spec, start the archive, point any DANDI client at it::

    from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, TestArchive, ZarrSpec

    spec = ArchiveSpec(dandisets=[DandisetSpec("000001", assets=[
        BlobSpec("a.txt", b"hi\\n"),
        BlobSpec("big.nwb", size=70 * 2**20, seed=1),          # generated, never in memory
        ZarrSpec("s.zarr", {".zgroup": b"{}", "0/0": b"..."}),
    ])])
    with TestArchive(spec) as archive:
        ...  # dandi download {archive.api_url}/dandisets/000001/versions/draft/

What it reproduces is what a downloader can observe of the real Archive (see
``<repo>/../shared/reference/archive-api.md`` §11): the routes and their Django quirks
(trailing-slash 301, HTML 404 for malformed ids), both paginators, the asset filters,
computed metadata and digests, auth and embargo, presigned redirects to a bucket that speaks
Range/416/XML errors. It can also misbehave on demand (:meth:`TestArchive.inject`), be
mutated mid-test (``add_blob``, ``replace_object``, ``publish``...), and it records every
request (``archive.requests``).

Pytest: the fixtures ``archive_factory`` and ``text_archive`` are registered automatically.
Standalone: ``python -m dandiget.testing serve --demo`` (see ``--help``).
"""

from __future__ import annotations

from dandiget.testing.demo import demo_spec, oracle_spec, scale_spec, text_spec
from dandiget.testing.faults import Fault
from dandiget.testing.model import (
    ArchiveSpec,
    AssetInfo,
    BlobSpec,
    DandisetSpec,
    UserSpec,
    ZarrSpec,
)
from dandiget.testing.recording import RequestRecord
from dandiget.testing.server import TestArchive

__all__ = [
    "ArchiveSpec",
    "AssetInfo",
    "BlobSpec",
    "DandisetSpec",
    "Fault",
    "RequestRecord",
    "TestArchive",
    "UserSpec",
    "ZarrSpec",
    "demo_spec",
    "oracle_spec",
    "scale_spec",
    "text_spec",
]
