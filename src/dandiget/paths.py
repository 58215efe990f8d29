"""Path safety: a server-provided asset path or Zarr key never lands outside the output folder.

dandi-cli joined server paths as they came (§11.2.11). The real Archive validates asset
paths, but a downloader must not trust that: a broken or hostile server, a proxy, or a
future API change must not be able to write to ``~/.bashrc``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UnsafePathError

#: Longest file or folder name most filesystems accept (bytes).
NAME_MAX = 255

#: Suffix of dandiget's in-progress files; never a valid asset name.
PART_SUFFIX = ".dandiget-part"


def check_relpath(path: str, *, what: str = "asset path") -> list[str]:
    """Split a relative posix path into segments, refusing anything that could escape.

    Refused: empty paths, absolute paths, backslashes, NUL, empty / ``.`` / ``..`` segments,
    names longer than 255 bytes, and names that collide with dandiget's temporary files.
    """
    if not isinstance(path, str) or not path:
        raise UnsafePathError(f"Refusing empty {what}")
    if "\x00" in path:
        raise UnsafePathError(f"Refusing {what} with a NUL byte: {path!r}")
    if "\\" in path:
        raise UnsafePathError(f"Refusing {what} with a backslash: {path!r}")
    if path.startswith("/") or (len(path) > 1 and path[1] == ":" and path[0].isalpha()):
        raise UnsafePathError(f"Refusing absolute {what}: {path!r}")
    parts = path.split("/")
    for seg in parts:
        if seg in ("", ".", ".."):
            raise UnsafePathError(f"Refusing {what} with a {seg or 'empty'!r} segment: {path!r}")
        if len(seg.encode("utf-8", "surrogatepass")) > NAME_MAX:
            raise UnsafePathError(f"Refusing {what} with a name over {NAME_MAX} bytes: {path!r}")
        if seg.endswith(PART_SUFFIX):
            raise UnsafePathError(f"Refusing {what} that looks like a dandiget temporary file: "
                                  f"{path!r}")
    return parts


def safe_join(root: Path, relpath: str, *, what: str = "asset path") -> Path:
    """``root / relpath`` after :func:`check_relpath`."""
    return root.joinpath(*check_relpath(relpath, what=what))


class Confinement:
    """Checks that directories we are about to write into resolve inside the output root.

    A symlink planted in the output tree (``out/sub -> /etc``) would otherwise redirect
    writes. Each directory is checked once per run (the result is cached).
    """

    def __init__(self, root: Path):
        self.root = Path(os.path.realpath(root))
        self._ok: set[str] = set()

    def check_dir(self, directory: Path) -> None:
        key = str(directory)
        if key in self._ok:
            return
        real = os.path.realpath(directory)
        if real != str(self.root) and not real.startswith(str(self.root) + os.sep):
            raise UnsafePathError(
                f"Refusing to write into {directory}: it resolves to {real}, outside the "
                f"output folder {self.root}")
        self._ok.add(key)

    def forget(self) -> None:
        self._ok.clear()


def temp_name(name: str, tag: str) -> str:
    """Deterministic hidden temporary name beside the target, keyed by the expected digest.

    Deterministic so that an interrupted run (even ``kill -9``) resumes it; keyed by digest so
    that a file changed on the server never resumes stale bytes. Too-long names are shortened
    with a hash so the temporary always fits in NAME_MAX.
    """
    candidate = f".{name}.{tag}{PART_SUFFIX}"
    if len(candidate.encode("utf-8", "surrogatepass")) <= NAME_MAX:
        return candidate
    import hashlib

    h = hashlib.md5(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f".{h}.{tag}{PART_SUFFIX}"
