"""Which local paths count as assets when ``--sync`` looks for files to delete (spec §4.10).

The rules follow dandi-cli's local-asset finder so that the same files are proposed for
deletion, with these deliberate fixes (spec §11.2 item 9):

* a missing (or non-directory) root yields nothing instead of raising ``ValueError``;
* download state is never mistaken for data: names ending in ``.dandidownload`` (dandi-cli's
  temporary directories) or ``.dandiget-part`` (dandiget's partial files) are skipped, and
  so is dandiget's hidden ``.dandiget/`` state folder (already covered by the dot rule).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ZARR_EXCLUDES", "ZARR_SUFFIXES", "find_local_assets", "is_zarr_name"]

lgr = logging.getLogger(__name__)

#: Directory suffixes that make a directory one Zarr asset (case-sensitive, as in dandi-cli).
ZARR_SUFFIXES = (".zarr", ".ngff")
#: Names inside a Zarr that are not part of it (VCS / datalad / dandi bookkeeping).
ZARR_EXCLUDES = frozenset({".dandi", ".datalad", ".git", ".gitattributes", ".gitmodules"})
#: Suffixes of in-progress downloads (dandi-cli's and dandiget's own).
STATE_SUFFIXES = (".dandidownload", ".dandiget-part")

_BIDS_MARKER = "dataset_description.json"
_BIDSIGNORE = ".bidsignore"


def is_zarr_name(name: str) -> bool:
    """Whether a directory called ``name`` is treated as a Zarr."""
    return os.path.splitext(name)[1] in ZARR_SUFFIXES


def _zarr_has_files(path: str) -> bool:
    """Whether a Zarr directory holds at least one file outside the excluded names."""
    stack = [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                entries = list(it)
        except OSError as exc:
            lgr.warning("%s: cannot list directory: %s", path, exc)
            continue
        for entry in entries:
            if entry.name in ZARR_EXCLUDES:
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.is_file():
                return True
    return False


def _skipped(name: str, is_dir: bool, in_bids: bool) -> bool:
    if name.endswith(STATE_SUFFIXES):
        return True
    if name.startswith("."):
        return not (name == _BIDSIGNORE and in_bids and not is_dir)
    return False


def find_local_assets(root: Path) -> Iterator[str]:
    """Yield the posix paths, relative to ``root``, of local candidates for sync deletion.

    Dot-names are skipped (except ``.bidsignore`` within a BIDS dataset, i.e. below a
    directory holding ``dataset_description.json``); ``root/dandiset.yaml`` is never a
    candidate; a ``*.zarr``/``*.ngff`` directory with at least one file is one candidate and
    is not descended into; symlinks to directories are ignored with a warning; empty
    directories yield nothing.  Order is deterministic (names sorted within a directory).
    """
    root_str = os.fspath(root)
    if not os.path.isdir(root_str):
        return
    # Depth-first with an explicit stack: (absolute dir, relative prefix, inside BIDS).
    stack: list[tuple[str, str, bool]] = [(root_str, "", False)]
    while stack:
        dirpath, prefix, in_bids = stack.pop()
        try:
            with os.scandir(dirpath) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            # Not listing a directory only means nothing in it is proposed for deletion.
            lgr.warning("%s: cannot list directory: %s", dirpath, exc)
            continue
        in_bids = in_bids or any(e.name == _BIDS_MARKER for e in entries)
        subdirs: list[tuple[str, str, bool]] = []
        for entry in entries:
            name = entry.name
            rel = prefix + name
            is_dir = entry.is_dir()
            if _skipped(name, is_dir, in_bids):
                continue
            if is_dir:
                if entry.is_symlink():
                    lgr.warning("%s: Ignoring unsupported symbolic link to directory", entry.path)
                elif is_zarr_name(name):
                    if _zarr_has_files(entry.path):
                        yield rel
                else:
                    subdirs.append((entry.path, rel + "/", in_bids))
            elif not (prefix == "" and name == "dandiset.yaml"):
                yield rel
        stack.extend(reversed(subdirs))
