"""Check a downloaded tree against the archive's digests, independently of dandiget's code.

Every expected file must exist with the archive's size and digest (``dandi:dandi-etag`` for
blobs, computed here from dandischema's part layout; md5 for Zarr entries). Files that
should not be there are reported too, except ``dandiset.yaml`` at the top.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1 << 20
_READ = 8 * MiB


def etag_part_size(size: int) -> int:
    """dandischema's PartGenerator: 64 MiB parts, more when that would need >= 10,000."""
    part = 64 * MiB
    if -(-size // part) >= 10_000:
        part = -(-size // 10_000)
    return part


def dandi_etag(path: Path, size: int) -> str:
    part = etag_part_size(size)
    digests = []
    with open(path, "rb", buffering=0) as f:
        left = size
        while left > 0:
            h = hashlib.md5()
            want = min(part, left)
            got = 0
            while got < want:
                chunk = f.read(min(_READ, want - got))
                if not chunk:
                    break
                h.update(chunk)
                got += len(chunk)
            if got < want:
                return "short-read"
            digests.append(h.digest())
            left -= want
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(_READ):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Verdict:
    expected: int = 0
    ok: int = 0
    ok_bytes: int = 0
    missing: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.ok == self.expected and not self.missing and not self.wrong and not self.extra

    def problems(self, limit: int = 5) -> str:
        parts = []
        for name, lst in (("missing", self.missing), ("wrong", self.wrong),
                          ("unexpected", self.extra)):
            if lst:
                shown = ", ".join(lst[:limit]) + (" ..." if len(lst) > limit else "")
                parts.append(f"{len(lst)} {name}: {shown}")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"expected": self.expected, "ok": self.ok, "ok_bytes": self.ok_bytes,
                "missing": len(self.missing), "wrong": len(self.wrong),
                "unexpected": len(self.extra), "problems": self.problems()}


def verify_tree(root: Path, files: dict[str, list], workers: int = 4, *,
                check_extra: bool = True) -> Verdict:
    """``files``: ``{relpath: [size, "etag"|"md5", digest, key]}`` from ``expected.json``.

    ``check_extra=False``: other files under ``root`` are not reported (checking one file).
    """
    v = Verdict(expected=len(files))

    def check(item: tuple[str, list]) -> tuple[str, str, int]:
        rel, (size, kind, digest, _key) = item
        p = root / rel
        try:
            st = p.stat()
        except OSError:
            return rel, "missing", 0
        if not p.is_file():
            return rel, "missing", 0
        if st.st_size != size:
            return rel, "wrong", 0
        got = dandi_etag(p, size) if kind == "etag" else md5_file(p)
        return (rel, "ok", size) if got == digest else (rel, "wrong", 0)

    with ThreadPoolExecutor(workers) as ex:
        for rel, state, nbytes in ex.map(check, files.items(), chunksize=64):
            if state == "ok":
                v.ok += 1
                v.ok_bytes += nbytes
            elif state == "missing":
                v.missing.append(rel)
            else:
                v.wrong.append(rel)
    if check_extra and root.is_dir():
        for dirpath, _dirs, names in os.walk(root):
            for name in names:
                rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
                if rel not in files and rel != "dandiset.yaml":
                    v.extra.append(rel)
    v.missing.sort()
    v.wrong.sort()
    v.extra.sort()
    return v


def first_expected_file(root: Path, files: dict[str, list]) -> str | None:
    """The first complete expected file under ``root`` (temporary names do not count)."""
    if not root.is_dir():
        return None
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not d.endswith(".dandidownload")]
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            spec = files.get(rel)
            if spec is not None:
                with contextlib.suppress(OSError):
                    if os.stat(os.path.join(dirpath, name)).st_size == spec[0]:
                        return rel
    return None
