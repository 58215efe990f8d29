"""The Python API for library use: quiet, a compact report, and docstring examples that run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import dandiget
from dandiget.download import download
from dandiget.errors import DownloadFailed
from dandiget.testing import ArchiveSpec, BlobSpec, DandisetSpec


def test_quiet_prints_nothing(text_archive, tmp_path: Path, capfd) -> None:
    url = f"{text_archive.api_url}/dandisets/000001/"
    report = download(url, tmp_path, quiet=True)
    assert report.ok and report.count("downloaded") == 5
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    # failures too: the exception and its report are the output
    import shutil

    shutil.rmtree(tmp_path / ".dandiget")
    try:
        download(url, tmp_path, quiet=True)
    except DownloadFailed as e:
        assert e.report is not None and len(e.report.errors) == 4
    else:
        raise AssertionError("expected DownloadFailed")
    out, _ = capfd.readouterr()
    assert out == ""


def test_not_quiet_by_default(text_archive, tmp_path: Path, capfd) -> None:
    """A drop-in for dandi-cli's download(), which shows its progress."""
    download(f"{text_archive.api_url}/dandisets/000001/", tmp_path)
    out, _ = capfd.readouterr()
    assert "5 files downloaded" in out


def test_report_repr_is_compact(archive_factory, tmp_path: Path) -> None:
    archive = archive_factory(ArchiveSpec(dandisets=[DandisetSpec(identifier="000001", assets=[
        BlobSpec(f"f{i:03d}.txt", b"x\n") for i in range(200)])]))
    report = download(f"{archive.api_url}/dandisets/000001/", tmp_path, quiet=True)
    text = repr(report)
    assert text.startswith("DownloadReport(ok=True, downloaded=201, skipped=0, failed=0, "
                           "deleted=0, bytes_downloaded=")
    assert len(text) < 200 and "FileOutcome" not in text


def modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(dandiget.__path__, "dandiget."):
        spec = importlib.util.find_spec(info.name)
        if spec and spec.origin and spec.origin.endswith(".py") and ">>>" in Path(
                spec.origin).read_text(encoding="utf-8"):
            names.append(info.name)
    return names


def test_docstring_examples_run() -> None:
    """Every ``>>>`` example in the package runs and shows what it says (doctest)."""
    names = modules_with_examples()
    assert "dandiget.download" in names
    for name in names:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS,
                                 verbose=False)
        assert result.attempted > 0 and result.failed == 0, name
