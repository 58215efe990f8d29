"""``verify`` and ``status``: how a local copy compares with the server (or the state).

Both speak one vocabulary, per asset (a Zarr is one asset, as in the download table):

=============  =============================================================
``OK``         the local copy matches
``DIFFERENT``  the local copy exists but does not match (with the detail)
``MISSING``    on the server, not here
``EXTRA``      here (under the URL's download area), not on the server
``UNVERIFIED`` here, but there is nothing to compare it with
``ERROR``      it could not be checked (with the reason)
=============  =============================================================

* :func:`verify` re-hashes the local copy and compares it with the server's digests (or,
  offline, with the digests dandiget recorded when it verified each file).
* :func:`status` reads no file content: it is exactly what a dry run of
  ``download -e refresh --sync`` plans (sizes, mtimes and the local state decide), told in
  the vocabulary above.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .api import ApiClient
from .digests import file_dandi_etag, file_hexdigest, local_zarr_checksum
from .events import Event, Failed, Planned
from .listing import RemoteAsset, iter_selected_assets
from .localtree import find_local_assets, is_zarr_name
from .resolve import (
    ParsedURL,
    URLKind,
    in_download_area,
    output_prefix,
    relative_download_path,
    resolve_url,
)
from .state import STATE_DIR, STATE_FILE, LocalState


@dataclass
class Findings:
    """Paths (relative to the dandiset's folder, or the folder checked) by verdict."""

    ok: list[str] = field(default_factory=list)
    different: list[tuple[str, str]] = field(default_factory=list)  # (path, detail)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    unverified: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def clean(self) -> bool:
        """Nothing differs (what the exit code says: 0 clean, 1 otherwise)."""
        return not (self.different or self.missing or self.extra or self.errors)

    def lines(self) -> list[str]:
        out = [f"DIFFERENT {p}: {d}" for p, d in self.different]
        out.extend(f"MISSING {p}" for p in self.missing)
        out.extend(f"EXTRA {p}" for p in self.extra)
        out.extend(f"UNVERIFIED {p}: {why}" for p, why in self.unverified)
        out.extend(f"ERROR {p}: {why}" for p, why in self.errors)
        return out

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.__dict__.items()}


def _version(parsed: ParsedURL, dandiset: dict[str, object]) -> str:
    """The version a download of this URL gets: the URL's, else latest published, else draft."""
    published = dandiset.get("most_recent_published_version")
    if parsed.version_id:
        return parsed.version_id
    return str(published["version"]) if isinstance(published, dict) else "draft"


async def _remote_assets(url: str) -> tuple[ParsedURL, list[RemoteAsset]]:
    async with aiohttp.ClientSession() as session:
        parsed = await resolve_url(url, session=session)
        client = ApiClient(parsed.instance, session)
        version = None
        if parsed.dandiset_id:
            version = _version(parsed, await client.get_dandiset(parsed.dandiset_id))
        assets = [RemoteAsset.from_api(item, parsed.instance.api)
                  async for item in iter_selected_assets(client, parsed, parsed.dandiset_id,
                                                         version)]
        return parsed, assets


def find_state_root(path: Path) -> Path | None:
    """The nearest folder at or above ``path`` holding a dandiget state database."""
    for p in (path, *path.parents):
        if (p / STATE_DIR / STATE_FILE).exists():
            return p
    return None


def local_base(path: Path, prefix: str) -> Path:
    """Where a URL's files are below ``path``: ``path/<prefix>`` when ``path`` is the folder
    given to ``download -o``, ``path`` itself when it is already the dandiset's folder."""
    if prefix and path.name != prefix and (path / prefix).is_dir():
        return path / prefix
    return path


def verify(path: str | Path, url: str | None = None) -> Findings:
    """Re-hash the local copy at ``path`` against ``url`` (or the recorded digests).

    ``path`` may be the folder given to ``download -o`` or the dandiset's folder in it.
    """
    if url is None:
        return _verify_offline(Path(path))
    parsed, assets = asyncio.run(_remote_assets(url))
    root = local_base(Path(path), output_prefix(parsed, preserve_tree=False))
    found = Findings()
    expected: set[str] = set()
    for a in assets:
        rel = relative_download_path(parsed, a.path, preserve_tree=False)
        expected.add(rel)
        local = root / rel
        if not (local.exists() or local.is_symlink()):
            found.missing.append(rel)
            continue
        if a.is_zarr:
            if a.zarr_checksum is None:
                found.unverified.append((rel, "the server has no Zarr checksum yet"))
                continue
            got = local_zarr_checksum(local) if local.is_dir() else "<not a folder>"
            want = a.zarr_checksum
            algo = "Zarr checksum"
        else:
            got = file_dandi_etag(local) if local.is_file() else "<not a file>"
            want = a.etag or ""
            algo = "dandi-etag"
        (found.ok.append(rel) if got == want
         else found.different.append((rel, f"{algo} {got} != {want}")))
    if parsed.kind is not URLKind.BASE_ASSET_ID and not parsed.is_single_asset:
        for rel in find_local_assets(root):
            if rel not in expected and in_download_area(parsed, rel):
                found.extra.append(rel)
    return found


def _zarr_of(rel: str) -> str | None:
    """The Zarr asset a recorded path belongs to (``a/b.zarr`` for ``a/b.zarr/0/0``)."""
    parts = rel.split("/")
    for i, part in enumerate(parts[:-1]):
        if is_zarr_name(part):
            return "/".join(parts[:i + 1])
    return None


def _verify_offline(root: Path) -> Findings:
    state_root = find_state_root(root.resolve())
    if state_root is None:
        raise FileNotFoundError(f"No dandiget state found at or above {root}; give a URL to "
                                "verify against the server")
    prefix = root.resolve().relative_to(state_root).as_posix()
    prefix = "" if prefix == "." else prefix
    state = LocalState(state_root, readonly=True)
    try:
        records = state.load_prefix(prefix)
    finally:
        state.close()
    # Per asset, as the server-side verify counts: a Zarr's entries make one verdict.
    zarr_missing: dict[str, int] = {}
    zarr_bad: dict[str, int] = {}
    blobs: list[str] = []
    found = Findings()
    for rec_path, rec in sorted(records.items()):
        local = state_root / rec_path
        rel = rec_path[len(prefix) + 1:] if prefix else rec_path
        zarr = _zarr_of(rel)
        if zarr is not None:
            zarr_missing.setdefault(zarr, 0)
            zarr_bad.setdefault(zarr, 0)
        if not local.is_file():
            if zarr is None:
                found.missing.append(rel)
            else:
                zarr_missing[zarr] += 1
            continue
        algo, want = rec.digest
        got = file_dandi_etag(local) if algo == "dandi-etag" else file_hexdigest(local, algo)
        if zarr is not None:
            zarr_bad[zarr] += got != want
        elif got == want:
            found.ok.append(rel)
        else:
            found.different.append((rel, f"{algo} {got} != {want}"))
        if zarr is None:
            blobs.append(rel)
    for zarr in sorted(zarr_missing):
        gone, bad = zarr_missing[zarr], zarr_bad[zarr]
        if not (root / zarr).is_dir():
            found.missing.append(zarr)
        elif gone or bad:
            detail = [f"{n} entr{'y' if n == 1 else 'ies'} {what}"
                      for n, what in ((gone, "missing"), (bad, "different")) if n]
            found.different.append((zarr, ", ".join(detail)))
        else:
            found.ok.append(zarr)
    known = set(blobs) | set(zarr_missing) | set(found.missing)
    found.extra.extend(rel for rel in find_local_assets(root) if rel not in known
                       and not _is_dandiset_yaml(rel))
    return found


def _is_dandiset_yaml(rel: str) -> bool:
    """``dandiset.yaml`` of the folder checked, or of a dandiset folder in it (not an asset)."""
    return rel == "dandiset.yaml" or (rel.count("/") == 1 and rel.endswith("/dandiset.yaml"))


def status(url: str, output_dir: str | Path) -> Findings:
    """What ``download -e refresh --sync`` of ``url`` into ``output_dir`` would change.

    It runs that download as a dry run (nothing is written, no file is read; the local
    state and stat decide) and tells its plan in :class:`Findings`' vocabulary, so status and
    the dry run cannot disagree. ``output_dir`` is the folder given to ``download -o``.
    """
    from .download import build_options, run_coroutine
    from .engine import Engine
    from .errors import DownloadFailed
    from .options import DownloadExisting, SyncMode

    out = Path(output_dir)
    parsed = run_coroutine(_parse(url))
    prefix = output_prefix(parsed, preserve_tree=False)
    plan: list[Planned | Failed] = []
    opts = build_options(existing=DownloadExisting.REFRESH, sync=SyncMode.DO, dry_run=True,
                         get_metadata=False)

    def listen(event: Event) -> None:
        if isinstance(event, (Planned, Failed)):
            plan.append(event)

    engine = Engine(opts, [listen])
    try:
        run_coroutine(engine.run(url, out))
    except DownloadFailed:
        pass  # "would fail" entries are findings (ERROR), not a failure of status
    found = Findings()
    for event in plan:
        rel = event.path[len(prefix) + 1:] if prefix else event.path
        if isinstance(event, Failed):
            found.errors.append((rel, event.message))
        elif event.action == "skip":
            found.ok.append(rel)
        elif event.action == "delete":
            found.extra.append(rel)
        elif event.action == "error":
            found.errors.append((rel, event.reason or "would fail"))
        elif event.reason == "new" or not (out / event.path).exists():
            found.missing.append(rel)
        else:
            found.different.append((rel, event.reason))
    return found


async def _parse(url: str) -> ParsedURL:
    async with aiohttp.ClientSession() as session:
        return await resolve_url(url, session=session)
