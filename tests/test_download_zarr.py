"""Zarr assets: whole, re-run, extra local files, corrupt entries, filters, state."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from dandiget.download import download
from dandiget.errors import DownloadFailed
from dandiget.testing import DandisetSpec, ZarrSpec

from .conftest import tree

ENTRIES = {
    ".zgroup": b'{"zarr_format": 2}',
    ".zattrs": b'{"name": "demo"}',
    "arr_0/.zarray": b'{"chunks": [2]}',
    "arr_0/0": b"\x00\x01" * 50,
    "arr_0/1": b"\x02\x03" * 50,
    "arr_1/.zarray": b'{"chunks": [3]}',
    "arr_1/sub/0.0": b"chunk-a",
    "arr_1/sub/deeper/0.1": b"chunk-b",
    "empty": b"",
}


@pytest.fixture
def zarr_archive(archive_factory, dandi_register):
    spec_ds = DandisetSpec(identifier="000003", assets=[ZarrSpec(path="sample.zarr",
                                                                 entries=ENTRIES)])
    from dandiget.testing import ArchiveSpec

    archive = archive_factory(ArchiveSpec(dandisets=[spec_ds]))
    dandi_register(archive)
    return archive


def url(archive, suffix: str = "") -> str:
    return f"dandi://{archive.instance.name}/000003{suffix}"


def zarr_tree(out: Path) -> dict[str, bytes]:
    return tree(out / "000003" / "sample.zarr")


def test_zarr_download_and_noop(zarr_archive, tmp_path) -> None:
    r = download(url(zarr_archive), tmp_path, format="plain")
    assert zarr_tree(tmp_path) == ENTRIES
    assert r.files_downloaded == len(ENTRIES) + 1  # + dandiset.yaml
    zarr_outcome = next(o for o in r.outcomes if o.kind == "zarr")
    assert zarr_outcome.status == "downloaded" and "9 done" in zarr_outcome.message
    # a re-run trusted by the local state reads no Zarr listing at all
    zarr_archive.clear_requests()
    r2 = download(url(zarr_archive), tmp_path, format="plain", existing="refresh")
    assert r2.files_downloaded == 0
    assert not [q for q in zarr_archive.requests if "/zarr/" in q.path]


def test_zarr_written_in_place_is_not_skipped_whole(zarr_archive, tmp_path) -> None:
    """Same size, mtime put back: the tree fingerprint still changes (ctime), so the Zarr is
    checked entry by entry and the damaged chunk is found and replaced."""
    download(url(zarr_archive), tmp_path, format="plain")
    chunk = tmp_path / "000003" / "sample.zarr" / "arr_0" / "1"
    st = chunk.stat()
    chunk.write_bytes(b"\xff" * st.st_size)
    os.utime(chunk, ns=(st.st_atime_ns, st.st_mtime_ns))
    zarr_archive.clear_requests()
    r = download(url(zarr_archive), tmp_path, format="plain", existing="overwrite-different")
    assert zarr_tree(tmp_path) == ENTRIES
    assert r.files_downloaded == 1
    assert [q for q in zarr_archive.requests if "/zarr/" in q.path]  # it was listed


def test_zarr_state_without_fingerprint_still_skips_whole(zarr_archive, tmp_path) -> None:
    """A state database written before tree fingerprints falls back to per-entry records."""
    download(url(zarr_archive), tmp_path, format="plain")
    db = sqlite3.connect(tmp_path / ".dandiget" / "state.sqlite")
    with db:
        assert db.execute("DELETE FROM zarr_fingerprints").rowcount == 1
    db.close()
    zarr_archive.clear_requests()
    r = download(url(zarr_archive), tmp_path, format="plain", existing="refresh")
    assert r.files_downloaded == 0
    assert not [q for q in zarr_archive.requests if "/zarr/" in q.path]
    out = next(o for o in r.outcomes if o.kind == "zarr")
    assert "checksum unchanged" in out.message


def test_zarr_removes_extra_local_files(zarr_archive, tmp_path) -> None:
    download(url(zarr_archive), tmp_path, format="plain")
    root = tmp_path / "000003" / "sample.zarr"
    (root / "orphan").write_bytes(b"x")
    (root / "orphan_dir" / "nested").mkdir(parents=True)
    (root / "orphan_dir" / "nested" / "f").write_bytes(b"y")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_bytes(b"keep")
    (root / ".gitattributes").write_bytes(b"keep")
    lines = []
    download(url(zarr_archive), tmp_path, format="plain", existing="overwrite",
             listeners=[lambda e: lines.append(e.record())])
    assert {"status": "deleting extra files"} in lines
    assert not (root / "orphan").exists() and not (root / "orphan_dir").exists()
    assert (root / ".git" / "config").read_bytes() == b"keep"
    assert (root / ".gitattributes").read_bytes() == b"keep"


def test_zarr_overwrite_different_and_smaller_remote(zarr_archive, tmp_path) -> None:
    download(url(zarr_archive), tmp_path, format="plain")
    root = tmp_path / "000003" / "sample.zarr"
    (root / "arr_0" / "0").write_bytes(b"\xff\x01" * 50)  # same size, different bytes
    smaller = {k: v for k, v in ENTRIES.items() if not k.startswith("arr_1/")}
    zarr_archive.set_zarr_entries("000003", "sample.zarr", smaller)
    download(url(zarr_archive), tmp_path, format="plain", existing="overwrite-different")
    assert zarr_tree(tmp_path) == smaller
    assert not (root / "arr_1" / "sub").exists()


def download_with_corrupt_entry(archive, out: Path) -> tuple[Path, str]:
    """Download with ``arr_0/1`` always corrupt; check it stays out and the rest is in.
    Returns the Zarr's folder and the first error message."""
    archive.inject(r"/arr_0/1$", host="content", corrupt=True)
    with pytest.raises(DownloadFailed) as exc:
        download(url(archive), out, format="plain")
    root = out / "000003" / "sample.zarr"
    assert not (root / "arr_0" / "1").exists()
    assert (root / "arr_0" / "0").read_bytes() == ENTRIES["arr_0/0"]
    # no temporary file is left at a final path; temporaries are hidden and resumable
    assert all(p.name.startswith(".") for p in root.rglob("*dandiget-part*"))
    return root, exc.value.report.errors[0].message


def test_zarr_corrupt_entry_not_left_in_place(zarr_archive, tmp_path) -> None:
    _root, msg = download_with_corrupt_entry(zarr_archive, tmp_path)
    assert "1 errored" in msg and "md5" in msg


def test_zarr_filters(zarr_archive, tmp_path) -> None:
    r = download(url(zarr_archive), tmp_path, format="plain", zarr=["metadata"])
    assert set(zarr_tree(tmp_path)) == {".zgroup", ".zattrs", "arr_0/.zarray", "arr_1/.zarray"}
    z = next(o for o in r.outcomes if o.kind == "zarr")
    assert "not verified" in z.message
    download(url(zarr_archive), tmp_path, format="plain", zarr=["glob:arr_1/**"],
             existing="skip")
    assert "arr_1/sub/deeper/0.1" in zarr_tree(tmp_path)
    assert "arr_0/0" not in zarr_tree(tmp_path)


def test_zarr_replaces_local_file_and_empty_zarr(archive_factory, dandi_register,
                                                 tmp_path) -> None:
    from dandiget.testing import ArchiveSpec

    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000003", assets=[ZarrSpec(path="sample.zarr", entries=ENTRIES),
                                     ZarrSpec(path="empty.zarr", entries={})])]))
    dandi_register(archive)
    (tmp_path / "000003").mkdir()
    (tmp_path / "000003" / "sample.zarr").write_bytes(b"not a zarr")
    r = download(url(archive), tmp_path, format="plain", existing="overwrite")
    assert zarr_tree(tmp_path) == ENTRIES
    empty = next(o for o in r.outcomes if o.path.endswith("empty.zarr"))
    assert empty.status == "downloaded" and "empty" in empty.message
    assert (tmp_path / "000003" / "empty.zarr").is_dir()


def test_zarr_with_pending_checksum_is_downloaded_and_said_unverified(archive_factory,
                                                                      dandi_register,
                                                                      tmp_path) -> None:
    """A Zarr the server has not checksummed yet: every entry is still md5-verified, and the
    record says the tree itself could not be."""
    from dandiget.testing import ArchiveSpec

    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(
        identifier="000003", assets=[ZarrSpec(path="sample.zarr", entries=ENTRIES,
                                              checksum_pending=True)])]))
    dandi_register(archive)
    r = download(url(archive), tmp_path, format="plain")
    assert zarr_tree(tmp_path) == ENTRIES
    out = next(o for o in r.outcomes if o.path.endswith("sample.zarr"))
    assert out.status == "downloaded"
    assert "no Zarr checksum yet: not verified" in out.message


def test_zarr_debug_records(zarr_archive, tmp_path, capsys) -> None:
    download(url(zarr_archive), tmp_path, format="debug")
    out = capsys.readouterr().out
    assert "'checksum': 'ok'" in out
    assert "deleting extra files" not in out
    json.dumps(out)  # plain text
