"""``status`` and ``verify``: one vocabulary, a non-zero exit when anything differs, the
same findings as the dry run, and the folder given to ``download -o`` accepted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec, TestArchive, ZarrSpec

ENTRIES = {".zgroup": b"{}", "a/.zarray": b"{}", "a/0": b"0" * 100, "a/1": b"1" * 100}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dandiget.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def staged(archive_factory, tmp_path: Path) -> tuple[TestArchive, str, Path]:
    """A downloaded dandiset, then changed on both sides in every way status can see."""
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000001", assets=[
        BlobSpec("one.txt", b"one\n"), BlobSpec("two.txt", b"two\n"),
        BlobSpec("sub/three.txt", b"three\n"), BlobSpec("gone.txt", b"gone soon\n"),
        ZarrSpec("s.zarr", ENTRIES),
    ])]))
    url = f"{archive.api_url}/dandisets/000001/"
    assert run_cli("download", url, "-o", str(tmp_path), "-f", "plain").returncode == 0
    r = run_cli("status", url, "-o", str(tmp_path))
    assert r.returncode == 0 and r.stdout.strip() == "Summary: 5 ok", r.stdout + r.stderr
    root = tmp_path / "000001"
    (root / "s.zarr" / "a" / "0").unlink()              # a chunk deleted
    with open(root / "one.txt", "ab") as f:               # a file changed (size)
        f.write(b"more\n")
    (root / "two.txt").unlink()                           # a file deleted
    (root / "extra.txt").write_bytes(b"mine\n")           # a local file the server lacks
    archive.add_blob("000001", "new.txt", b"new\n")       # new on the server
    archive.remove_asset("000001", "gone.txt")            # gone from the server
    return archive, url, tmp_path


def dry_run_plan(url: str, out: Path) -> dict[str, str]:
    r = run_cli("download", url, "-o", str(out), "--dry-run", "-e", "refresh", "--sync",
                "--download", "assets", "-f", "json")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    return {e["path"].removeprefix("000001/"): e["action"] for e in events
            if e["event"] == "planned"}


def findings(r: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    found = json.loads(r.stdout)
    by_word: dict[str, set[str]] = {}
    for line in found["details"]:
        word, path = line.split(" ", 1)
        by_word.setdefault(word, set()).add(path.split(": ")[0])
    return {"counts": found, **by_word}


def test_status_agrees_with_the_dry_run(staged) -> None:
    _, url, out = staged
    r = run_cli("status", url, "-o", str(out), "--json")
    assert r.returncode == 1, r.stderr  # things differ: like git diff --exit-code
    st = findings(r)
    assert st["MISSING"] == {"two.txt", "new.txt"}
    assert st["DIFFERENT"] == {"one.txt", "s.zarr"}  # the deleted chunk is seen
    assert st["EXTRA"] == {"extra.txt", "gone.txt"}
    assert st["counts"]["ok"] == 1 and not st["counts"]["clean"]  # sub/three.txt
    plan = dry_run_plan(url, out)
    assert {p for p, a in plan.items() if a == "download"} == st["MISSING"] | st["DIFFERENT"]
    assert {p for p, a in plan.items() if a == "delete"} == st["EXTRA"]
    assert {p for p, a in plan.items() if a == "skip"} == {"sub/three.txt"}
    text = run_cli("status", url, "-o", str(out)).stdout
    assert "DIFFERENT s.zarr: 1 entry to download, 3 skipped" in text
    assert "NEW" not in text and "DELETED" not in text


def test_verify_uses_the_same_words_and_counts(staged) -> None:
    _, url, out = staged
    r = run_cli("verify", str(out), url, "--json")  # the folder given to download -o
    assert r.returncode == 1, r.stderr
    ver = findings(r)
    st = findings(run_cli("status", url, "-o", str(out), "--json"))
    for word in ("MISSING", "DIFFERENT", "EXTRA"):
        assert ver[word] == st[word], word
    assert ver["counts"]["ok"] == st["counts"]["ok"] == 1
    # the dandiset's own folder is accepted too, with the same result
    assert findings(run_cli("verify", str(out / "000001"), url, "--json")) == ver


def test_offline_verify_counts_a_zarr_as_one(staged) -> None:
    _, _, out = staged
    r = run_cli("verify", str(out))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert "DIFFERENT 000001/s.zarr: 1 entry missing" in lines
    assert "MISSING 000001/two.txt" in lines and "EXTRA 000001/extra.txt" in lines
    assert any(s.startswith("DIFFERENT 000001/one.txt: dandi-etag") for s in lines)
    assert not any("s.zarr/" in s for s in lines)  # no line per chunk


def test_clean_copy_exits_zero(text_archive, tmp_path: Path) -> None:
    url = f"{text_archive.api_url}/dandisets/000001/"
    assert run_cli("download", url, "-o", str(tmp_path), "-f", "plain").returncode == 0
    for args in (["verify", str(tmp_path), url], ["verify", str(tmp_path)],
                 ["status", url, "-o", str(tmp_path)]):
        r = run_cli(*args)
        assert r.returncode == 0, (args, r.stdout, r.stderr)
        assert r.stdout.splitlines()[-1] == "Summary: 4 ok", args
