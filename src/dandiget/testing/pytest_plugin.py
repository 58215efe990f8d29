"""Pytest fixtures for testing DANDI clients against :class:`~dandiget.testing.TestArchive`.

Opt-in, so that installing dandiget does not change every pytest session: load it with
``pytest -p dandiget.testing.pytest_plugin`` or ``pytest_plugins = ["dandiget.testing.pytest_plugin"]``
in a ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from dandiget.testing.demo import text_spec
from dandiget.testing.model import ArchiveSpec
from dandiget.testing.server import TestArchive

ArchiveFactory = Callable[..., TestArchive]


@pytest.fixture
def archive_factory() -> Iterator[ArchiveFactory]:
    """``archive_factory(spec, **kwargs) -> TestArchive``, started; all stopped at teardown."""
    started: list[TestArchive] = []

    def make(spec: ArchiveSpec | None = None, **kwargs: object) -> TestArchive:
        archive = TestArchive(spec, **kwargs)  # type: ignore[arg-type]
        archive.start()
        started.append(archive)
        return archive

    yield make
    for archive in reversed(started):
        archive.stop()


@pytest.fixture
def text_archive(archive_factory: ArchiveFactory) -> TestArchive:
    """dandi-cli's ``text_dandiset`` as 000001 and its ``zarr_dandiset`` (sample.zarr) as 000002."""
    return archive_factory(text_spec())
