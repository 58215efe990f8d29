"""``verify`` and ``status``: what a local copy holds compared with the server (or the state).

* :func:`verify` re-hashes the local copy and compares it with the server's digests (or,
  offline, with the digests dandiget recorded when it verified each file), and lists files
  that are missing or extra.
* :func:`status` says what a download would change — new, modified and deleted remote
  assets — from the listing and the local state only, without reading file contents.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .api import ApiClient
from .digests import file_dandi_etag, file_hexdigest, local_zarr_checksum
from .listing import RemoteAsset, iter_selected_assets
from .localtree import find_local_assets
from .plan import LocalStat
from .resolve import ParsedURL, URLKind, in_download_area, relative_download_path, resolve_url
from .state import STATE_DIR, STATE_FILE, LocalState


@dataclass
class Findings:
    """Paths (relative to the checked folder) by verdict."""

    ok: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str]] = field(default_factory=list)  # (path, detail)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.mismatched or self.missing or self.extra or self.new
                    or self.modified or self.deleted)

    def lines(self) -> list[str]:
        out = [f"MISMATCH {p}: {d}" for p, d in self.mismatched]
        for label, items in (("MISSING", self.missing), ("EXTRA", self.extra),
                             ("NEW", self.new), ("MODIFIED", self.modified),
                             ("DELETED", self.deleted), ("UNVERIFIED", self.unverified)):
            out.extend(f"{label} {p}" for p in items)
        return out

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.__dict__.items()}


async def _remote_assets(url: str) -> tuple[ParsedURL, list[RemoteAsset]]:
    async with aiohttp.ClientSession() as session:
        parsed = await resolve_url(url, session=session)
        client = ApiClient(parsed.instance, session)
        version = None
        if parsed.dandiset_id:
            ds = await client.get_dandiset(parsed.dandiset_id)
            published = ds.get("most_recent_published_version")
            version = parsed.version_id or (published["version"] if published else "draft")
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


def verify(path: str | Path, url: str | None = None) -> Findings:
    """Re-hash the local copy at ``path`` against ``url`` (or the recorded digests)."""
    root = Path(path)
    if url is None:
        return _verify_offline(root)
    parsed, assets = asyncio.run(_remote_assets(url))
    found = Findings()
    expected: set[str] = set()
    for a in assets:
        rel = relative_download_path(parsed, a.path, preserve_tree=False)
        expected.add(rel)
        local = root / rel
        if not local.exists():
            found.missing.append(rel)
            continue
        if a.is_zarr:
            if a.zarr_checksum is None:
                found.unverified.append(rel)
                continue
            got = local_zarr_checksum(local)
            want = a.zarr_checksum
        else:
            got = file_dandi_etag(local) if local.is_file() else "<not a file>"
            want = a.etag or ""
        (found.ok.append(rel) if got == want
         else found.mismatched.append((rel, f"{got} != {want}")))
    if parsed.kind is not URLKind.BASE_ASSET_ID and not parsed.is_single_asset:
        for rel in find_local_assets(root):
            if rel not in expected and in_download_area(parsed, rel):
                found.extra.append(rel)
    return found


def _verify_offline(root: Path) -> Findings:
    found = Findings()
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
    for rec_path, rec in sorted(records.items()):
        local = state_root / rec_path
        rel = rec_path[len(prefix) + 1:] if prefix else rec_path
        if not local.is_file():
            found.missing.append(rel)
            continue
        algo, want = rec.digest
        got = file_dandi_etag(local) if algo == "dandi-etag" else file_hexdigest(local, algo)
        (found.ok.append(rel) if got == want
         else found.mismatched.append((rel, f"{algo} {got} != {want}")))
    return found


def status(url: str, output_dir: str | Path) -> Findings:
    """What downloading ``url`` into ``output_dir`` would change, from state and listing."""
    from .resolve import output_prefix

    out = Path(output_dir)
    parsed, assets = asyncio.run(_remote_assets(url))
    prefix = output_prefix(parsed, preserve_tree=False)
    base = out / prefix if prefix else out
    state = LocalState(out, readonly=True)
    try:
        records = state.load_prefix(prefix)
        found = Findings()
        listed: set[str] = set()
        for a in assets:
            rel = relative_download_path(parsed, a.path, preserve_tree=False)
            listed.add(rel)
            rec_path = f"{prefix}/{rel}" if prefix else rel
            local = base / rel
            if not (local.exists() or local.is_symlink()):
                found.new.append(rel)
            elif a.is_zarr:
                z = state.get_zarr(rec_path)
                if z is None:
                    found.unverified.append(rel)
                elif z.checksum != a.zarr_checksum:
                    found.modified.append(rel)
                else:
                    found.ok.append(rel)
            else:
                rec = records.get(rec_path)
                st = LocalStat.of(local)
                if rec is None or st is None:
                    found.unverified.append(rel)
                elif rec.digest[1] != a.etag:
                    found.modified.append(rel)
                elif rec.signature != st.signature():
                    found.unverified.append(rel)
                else:
                    found.ok.append(rel)
        if not parsed.is_single_asset:
            for rel in find_local_assets(base):
                if rel not in listed and in_download_area(parsed, rel):
                    found.deleted.append(rel)
        return found
    finally:
        state.close()
