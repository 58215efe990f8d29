"""``TestArchive``: runs the API host and the content host on one background event loop.

Tests use it as a context manager; everything they call (inspection, mutations, fault
injection, the request log) is thread-safe, so the archive can be driven from synchronous
tests, from async tests on another loop, or from another process through the CLI.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from dandiget.instances import Instance
from dandiget.testing import metadata as md
from dandiget.testing.api import ApiHost
from dandiget.testing.content import ContentHost, manifest
from dandiget.testing.data import Source
from dandiget.testing.faults import Fault, FaultSet
from dandiget.testing.model import (
    ZARR_SUFFIXES,
    ArchiveSpec,
    AssetInfo,
    AssetSpec,
    BlobSpec,
    DandisetSpec,
    ZarrSpec,
)
from dandiget.testing.pagination import ListingBehaviour, PageHook
from dandiget.testing.presign import Signer
from dandiget.testing.recording import RequestLog, RequestRecord
from dandiget.testing.records import Asset
from dandiget.testing.store import Store

SHUTDOWN_TIMEOUT = 0.5


class TestArchive:
    """A DANDI-compatible archive on 127.0.0.1: an API host plus an S3-like content host.

    ``content_base_url`` makes ``contentUrl`` and download redirects point at another server
    (e.g. nginx over :meth:`materialize`'s output) instead of the built-in content host.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, spec: ArchiveSpec | None = None, *, content_base_url: str | None = None,
                 host: str = "127.0.0.1", api_port: int = 0, content_port: int = 0,
                 secret: bytes | None = None):
        self.spec = spec if spec is not None else ArchiveSpec()
        self.store = Store(self.spec)
        self.site = md.Site()
        self.signer = Signer(secret)
        self.faults = FaultSet()
        self.log = RequestLog()
        self.listing = ListingBehaviour()
        self._host = host
        self._ports = (api_port, content_port)
        self._content_base_url = content_base_url.rstrip("/") if content_base_url else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self._pool: ThreadPoolExecutor | None = None
        self.api_port = 0
        self.content_port = 0
        if self._content_base_url:
            self.site.content_base = self._content_base_url

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str], identifier: str = "000001",
                       **kwargs: Any) -> TestArchive:
        """Serve a local tree: files become blobs, ``*.zarr``/``*.ngff`` directories zarrs."""
        return cls(ArchiveSpec(dandisets=[dandiset_from_directory(path, identifier)]), **kwargs)

    def start(self) -> TestArchive:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dandiget-test-api")
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="dandiget-test-archive", daemon=True)
        self._thread.start()
        started.wait()
        try:
            asyncio.run_coroutine_threadsafe(self._astart(), loop).result(30)
        except BaseException:
            self.stop()
            raise
        return self

    async def _astart(self) -> None:
        assert self._pool is not None
        api = ApiHost(self.store, self.site, self.signer, self.faults, self.log, self._pool)
        api.listing = self.listing
        content = ContentHost(self.store, self.site, self.signer, self.faults, self.log,
                              self._pool)
        ports = []
        for app, port in ((api.app(), self._ports[0]), (content.app(), self._ports[1])):
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                   shutdown_timeout=SHUTDOWN_TIMEOUT)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, self._host, port)
            await site.start()
            server = site._server
            assert server is not None
            sockets = getattr(server, "sockets", None) or []
            ports.append(sockets[0].getsockname()[1])
        self.api_port, self.content_port = ports
        self.site.api_url = self.api_url
        self.site.gui_url = f"http://{self._url_host}:{self.api_port}"
        self.site.content_base = self._content_base_url or self.content_url

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._astop(), loop)
            try:
                fut.result(10)
            except Exception:  # pragma: no cover - best effort shutdown
                pass
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._loop = self._thread = self._pool = None
        self._runners = []

    async def _astop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    def __enter__(self) -> TestArchive:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses

    @property
    def _url_host(self) -> str:
        return "127.0.0.1" if self._host in ("", "0.0.0.0") else self._host

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:<port>/api`` (no trailing slash)."""
        return f"http://{self._url_host}:{self.api_port}/api"

    @property
    def content_url(self) -> str:
        """Root of the built-in content host (the "bucket")."""
        return f"http://{self._url_host}:{self.content_port}"

    @property
    def instance(self) -> Instance:
        return Instance(name=f"dandi-test-{self.api_port}", gui=None, api=self.api_url)

    def dandiset_url(self, identifier: str, version: str | None = None) -> str:
        """``<api>/dandisets/<id>/[versions/<v>/]``: a URL dandi-cli and dandiget accept."""
        url = f"{self.api_url}/dandisets/{identifier}/"
        return url + (f"versions/{version}/" if version else "")

    # ------------------------------------------------------------------ inspection

    def _info(self, a: Asset) -> AssetInfo:
        meta = md.asset_metadata(self.site, a)
        return AssetInfo(
            asset_id=a.asset_id,
            blob_id=a.blob.blob_id if a.blob is not None else None,
            zarr_id=a.zarr.zarr_id if a.zarr is not None else None,
            path=a.path,
            size=a.size,
            digests=dict(meta["digest"]),
            content_url=meta["contentUrl"][1],
            metadata=meta,
        )

    def asset(self, identifier: str, path: str, version: str = "draft") -> AssetInfo:
        with self.store.lock:
            return self._info(self.store.asset_by_path(identifier, path, version))

    def assets(self, identifier: str, version: str = "draft") -> list[AssetInfo]:
        """Every asset of a version, in creation order."""
        with self.store.lock:
            v = self.store.dandiset(identifier).version(version)
            return [self._info(a) for a in v.assets]

    def read_blob(self, identifier: str, path: str, version: str = "draft") -> bytes:
        """The bytes the content host currently serves for a blob asset."""
        with self.store.lock:
            a = self.store.asset_by_path(identifier, path, version)
            if a.blob is None:
                raise ValueError(f"{path} is a zarr")
            src = a.blob.served
        return src.read()

    def zarr_files(self, identifier: str, path: str) -> dict[str, bytes]:
        """Every entry of a zarr asset as served (small zarrs only)."""
        with self.store.lock:
            a = self.store.asset_by_path(identifier, path)
            if a.zarr is None:
                raise ValueError(f"{path} is not a zarr")
            e = a.zarr.entries
            srcs = [(k, e.served(i)) for i, k in enumerate(e.keys)]
        return {k: s.read() for k, s in srcs}

    def expected_files(self, identifier: str, version: str = "draft") -> dict[str, Source]:
        """``relative path -> source`` of every file a full download must produce."""
        out: dict[str, Source] = {}
        with self.store.lock:
            v = self.store.dandiset(identifier).version(version)
            for a in v.assets:
                if a.blob is not None:
                    out[a.path] = a.blob.source
                elif a.zarr is not None:
                    e = a.zarr.entries
                    for i, k in enumerate(e.keys):
                        out[f"{a.path}/{k}"] = e.source(i)
        return out

    def compare_tree(self, directory: str | os.PathLike[str], identifier: str,
                     version: str = "draft") -> list[str]:
        """Differences between a downloaded tree and the archive (empty list = identical).

        Byte-compares every expected file; extra files (other than ``dandiset.yaml``) are
        reported too.
        """
        root = Path(directory)
        problems: list[str] = []
        expected = self.expected_files(identifier, version)
        for rel, src in expected.items():
            p = root / rel
            if not p.is_file():
                problems.append(f"missing: {rel}")
                continue
            if p.stat().st_size != src.size:
                problems.append(f"size differs: {rel} ({p.stat().st_size} != {src.size})")
                continue
            with open(p, "rb") as f:
                for chunk in src.iter_range():
                    if f.read(len(chunk)) != chunk:
                        problems.append(f"content differs: {rel}")
                        break
        for p in root.rglob("*"):
            if p.is_file():
                rel = p.relative_to(root).as_posix()
                if rel not in expected and rel != "dandiset.yaml":
                    problems.append(f"unexpected: {rel}")
        return problems

    # ------------------------------------------------------------------ mutations

    def add_blob(self, identifier: str, path: str, content: bytes | None = None,
                 **kwargs: Any) -> AssetInfo:
        """Upload a blob to the draft (a new asset id, replacing any asset at ``path``)."""
        with self.store.lock:
            return self._info(self.store.add_blob(identifier, BlobSpec(path, content, **kwargs)))

    def add_zarr(self, identifier: str, path: str,
                 entries: Mapping[str, bytes] | None = None, **kwargs: Any) -> AssetInfo:
        with self.store.lock:
            return self._info(self.store.add_zarr(identifier, ZarrSpec(path, entries, **kwargs)))

    def remove_asset(self, identifier: str, path: str) -> None:
        self.store.remove_asset(identifier, path)

    def replace_object(self, identifier: str, path: str, content: bytes | Source,
                       version: str = "draft") -> None:
        """Swap the bytes behind the same content URL, leaving every digest as it was.

        ``path`` may name a blob asset or an entry inside a zarr (``"x.zarr/arr/0"``).
        """
        self.store.replace_object(identifier, path, content, version)

    def set_zarr_entries(self, identifier: str, path: str,
                         entries: Mapping[str, bytes | Source]) -> AssetInfo:
        """Replace a zarr's entries (listing, checksum and sizes follow)."""
        with self.store.lock:
            self.store.set_zarr_entries(identifier, path, entries)
            return self._info(self.store.asset_by_path(identifier, path))

    def set_embargo(self, identifier: str, embargoed: bool) -> None:
        self.store.set_embargo(identifier, embargoed)

    def publish(self, identifier: str, release_notes: str = "") -> str:
        """Publish the draft's blobs; returns the new ``0.YYMMDD.HHMM`` version."""
        return self.store.publish(identifier, release_notes)

    # ------------------------------------------------------------------ faults and log

    def inject(self, match: str, *, host: str = "any", method: str | None = None,
               times: int | None = None, status: int | None = None,
               retry_after: int | str | None = None, drop_after: int | None = None,
               stall: float | None = None, corrupt: bool = False, ignore_range: bool = False,
               wrong_content_range: bool = False, short_body: bool = False,
               long_body: bool = False, rate: float | None = None, latency: float | None = None,
               expire_presigned: bool = False, pause_at: int | None = None,
               skip: int = 0, range: str | None = None, echo_auth: bool = False,
               refuse_unsigned: bool = False, disconnect: bool = False) -> Fault:
        """Misbehave on requests whose ``path?query`` matches the regex ``match`` (and whose
        ``Range`` header matches ``range``, if given).

        ``pause_at`` holds matching responses before that byte until ``fault.release()``
        (``fault.wait_paused()`` returns once one is held); ``skip`` lets the first matching
        requests through untouched. See :mod:`dandiget.testing.faults`.
        """
        return self.faults.add(
            match, host=host, method=method, times=times, status=status,
            retry_after=retry_after, drop_after=drop_after, stall=stall, corrupt=corrupt,
            ignore_range=ignore_range, wrong_content_range=wrong_content_range,
            short_body=short_body, long_body=long_body, rate=rate, latency=latency,
            expire_presigned=expire_presigned, pause_at=pause_at, skip=skip, range=range,
            echo_auth=echo_auth, refuse_unsigned=refuse_unsigned, disconnect=disconnect)

    def clear_faults(self) -> None:
        self.faults.clear()

    def limit_metadata_rows(self, rows: int | None) -> None:
        """Answer 503 (as the Archive's router does when a worker runs out of time) to any
        ``metadata=true`` asset page holding more than ``rows`` rows; None lifts the limit."""
        self.listing.metadata_row_budget = rows

    def after_asset_page(self, identifier: str, page: int, action: Callable[[], Any], *,
                         times: int | None = 1) -> PageHook:
        """Run ``action`` (e.g. ``lambda: archive.add_blob(...)``) right after page ``page``
        of ``identifier``'s asset listing is produced: the draft changes between two pages,
        as when someone uploads while a download lists. ``times=None``: on every such page."""
        hook = PageHook(identifier, page, action, times)
        with self.listing._lock:
            self.listing.hooks.append(hook)
        return hook

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request received so far, in arrival order (a snapshot)."""
        return self.log.snapshot()

    def clear_requests(self) -> None:
        self.log.clear()

    # ------------------------------------------------------------------ bucket on disk

    def materialize(self, directory: str | os.PathLike[str]) -> Path:
        """Write the bucket (``blobs/``, ``zarr/``, ``dandisets/`` manifests) under ``directory``.

        Ids are derived from the spec, so another process serving the same spec with
        ``content_base_url`` pointing at a static server over this tree agrees on every key.
        """
        root = Path(directory)
        for key, src in self.store.iter_objects():
            _write(root / key, src)
        with self.store.lock:
            versions = [(d.identifier, v.version) for d in self.store.dandisets.values()
                        if not d.embargoed for v in d.versions]
        for did, ver in versions:
            for name in ("assets.jsonld", "assets.yaml", "dandiset.jsonld", "dandiset.yaml"):
                with self.store.lock:
                    obj = manifest(self.store, self.site, did, ver, name)
                if obj is not None:
                    _write(root / "dandisets" / did / ver / name, obj.source)
        return root


def _write(path: Path, src: Source) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for chunk in src.iter_range():
            f.write(chunk)


def dandiset_from_directory(path: str | os.PathLike[str], identifier: str) -> DandisetSpec:
    """A DandisetSpec for a local tree (``dandiset.yaml`` supplies the name if present)."""
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(root)
    assets: list[AssetSpec] = []
    name = root.name
    skip = {".git", ".datalad", ".dandi", ".gitattributes", ".gitmodules"}

    def walk(d: Path) -> None:
        for p in sorted(d.iterdir()):
            if p.name in skip:
                continue
            rel = p.relative_to(root).as_posix()
            if p.is_dir():
                if p.name.endswith(ZARR_SUFFIXES):
                    entries = {f.relative_to(p).as_posix(): f for f in sorted(p.rglob("*"))
                               if f.is_file() and not (set(f.relative_to(p).parts) & skip)}
                    assets.append(ZarrSpec(rel, entries))
                else:
                    walk(p)
            elif p.is_file():
                if rel == "dandiset.yaml":
                    continue
                assets.append(BlobSpec(rel, file=p))

    walk(root)
    meta = root / "dandiset.yaml"
    if meta.is_file():
        from ruamel.yaml import YAML

        data = YAML(typ="safe").load(meta.read_text())
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            name = data["name"]
    return DandisetSpec(identifier=identifier, name=name, assets=assets)

