"""Run the test archive's API in its own process, with content served by another server.

    python bench/archive_server.py --kind full --cache DIR --content-base http://127.0.0.1:PORT
                                   [--api-cost s3like]

Builds the corpus spec (``corpus.py``), materialises the bucket once under
``DIR/corpus-<kind>-<hash>/`` (reused by later runs while the spec and the generator code are
unchanged), writes ``expected.json`` there (every file a complete download must produce, with
the archive's digest, and every object key for URL-list tools), starts the API and prints
one JSON line on stdout::

    {"api_url": ..., "content_base_url": ..., "corpus": ..., "expected": ...}

then serves until it is killed, gets SIGTERM/SIGINT, or its stdin is closed (so it never
outlives the harness that started it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus
from api_latency import ApiCost, ApiLatency


def expected_manifest(archive: object, spec: object) -> dict:
    """``{dandiset: {"files": {rel: [size, kind, digest, object_key]}, ...}}``.

    ``kind`` is ``etag`` (dandi-etag of a blob) or ``md5`` (a Zarr entry); ``object_key`` is
    the key under the content host (``blobs/...`` or ``zarr/<id>/<key>``).
    """
    out: dict = {}
    for ds in spec.dandisets:  # type: ignore[attr-defined]
        did = ds.identifier
        files: dict[str, list] = {}
        zarrs: dict[str, dict] = {}
        for info in archive.assets(did):  # type: ignore[attr-defined]
            if info.zarr_id is None:
                key = info.content_url.split("/", 3)[3]  # strip scheme://host:port/
                files[info.path] = [info.size, "etag", info.digests["dandi:dandi-etag"], key]
                continue
            store = archive.store  # type: ignore[attr-defined]
            with store.lock:
                entries = store.asset_by_path(did, info.path).zarr.entries
                rows = [(k, entries.sizes[i], entries.md5(i)) for i, k in enumerate(entries.keys)]
            prefix = f"zarr/{info.zarr_id}/"
            for k, size, md5 in rows:
                files[f"{info.path}/{k}"] = [size, "md5", md5, prefix + k]
            zarrs[info.path] = {"zarr_id": info.zarr_id, "entries": len(rows),
                                "checksum": info.digests.get("dandi:dandi-zarr-checksum")}
        out[did] = {"files": files, "zarrs": zarrs,
                    "bytes": sum(v[0] for v in files.values())}
    return out


def _sample_ok(root: Path, manifest: dict, per_dandiset: int = 16) -> bool:
    """Spot-check cached objects against the digests this archive computes now.

    The cache key covers the spec only; this catches a change of the generator code (same
    spec, other bytes) without re-hashing gigabytes: evenly spaced files of every dandiset,
    each at most one dandi-etag part (so md5 and dandi-etag are quick to compare).
    """
    for ds in manifest.values():
        items = [v for v in ds["files"].values() if v[0] <= 64 * 2**20]
        step = max(1, len(items) // per_dandiset)
        for size, kind, digest, key in items[::step]:
            p = root / key
            try:
                data = p.read_bytes()
            except OSError:
                return False
            if kind == "md5":
                got = hashlib.md5(data).hexdigest()
            else:  # a one-part dandi-etag: md5 of the part's md5 ("-0": md5 of nothing)
                got = hashlib.md5(hashlib.md5(data).digest() if data else b"").hexdigest()
                got += f"-{1 if data else 0}"
            if len(data) != size or got != digest:
                return False
    return True


def materialize_objects(archive: object, directory: Path) -> None:
    """Write every blob and Zarr entry under ``directory`` (what nginx serves).

    ``TestArchive.materialize`` also renders the ``dandisets/<id>/<version>/assets.yaml``
    manifests, which no downloader reads and which take tens of minutes (and gigabytes of
    memory) for a 100,000-asset dandiset; the bucket objects alone are written here, with
    the same keys.
    """
    store = getattr(archive, "store", None)
    if store is None or not hasattr(store, "iter_objects"):
        archive.materialize(directory)  # type: ignore[attr-defined]
        return
    made: set[Path] = set()
    for key, src in store.iter_objects():
        path = directory / key
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        with open(path, "wb") as f:
            for chunk in src.iter_range():
                f.write(chunk)


def prepare_corpus(kind: str, cache: Path, archive: object, spec: object) -> Path:
    """The materialised bucket for ``kind`` (built now unless a valid one is cached)."""
    h = corpus.spec_hash(kind)
    root = cache / f"corpus-{kind}-{h}"
    manifest = expected_manifest(archive, spec)
    if (root / ".complete").is_file():
        try:
            cached = json.loads((root / "expected.json").read_text())
        except (OSError, ValueError):
            cached = None
        if cached == manifest and _sample_ok(root, manifest):
            return root
        print(f"cached corpus {root} does not match the archive any more: rebuilding",
              file=sys.stderr, flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    for old in cache.glob(f"corpus-{kind}-*"):  # stale corpora of this kind: free the disk
        pid = old.name.rpartition(".tmp-")[2]
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue  # being built right now by another process
        shutil.rmtree(old, ignore_errors=True)
    tmp = cache / f"corpus-{kind}-{h}.tmp-{os.getpid()}"
    t0 = time.monotonic()
    print(f"materialising the {kind} corpus into {root} ...", file=sys.stderr, flush=True)
    materialize_objects(archive, tmp)
    (tmp / "expected.json").write_text(json.dumps(manifest))
    (tmp / ".complete").write_text(h + "\n")
    tmp.rename(root)
    print(f"materialised in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    return root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=sorted(corpus.ALL_KINDS), default="full")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address the API listens on (scaling.py: a veth address)")
    ap.add_argument("--cache", type=Path, required=True, help="where corpora are cached")
    ap.add_argument("--content-base", default=None,
                    help="URL of the server over the materialised corpus (default: the "
                         "archive's own content host)")
    ap.add_argument("--api-cost", choices=("none", "s3like"), default="none",
                    help="add the real API's latency to every API answer (api_latency.py)")
    ap.add_argument("--prepare-only", action="store_true",
                    help="materialise the corpus, print its location and exit")
    args = ap.parse_args()

    from dandiget.testing import TestArchive

    spec = corpus.build_spec(args.kind)
    archive = TestArchive(spec, content_base_url=args.content_base, host=args.host)
    root = prepare_corpus(args.kind, args.cache, archive, spec)
    if args.api_cost != "none":
        counts = {ds.identifier: len(ds.assets) for ds in spec.dandisets}
        # Before start(): the API host takes the archive's fault set when it starts.
        archive.faults = ApiLatency(ApiCost(), lambda did, _version: counts.get(did, 0))
    if args.prepare_only:
        print(json.dumps({"corpus": str(root), "expected": str(root / "expected.json")}),
              flush=True)
        return 0

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def watch_stdin() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    archive.start()
    try:
        print(json.dumps({
            "api_url": archive.api_url,
            "content_base_url": args.content_base or archive.content_url,
            "builtin_content_url": archive.content_url,
            "corpus": str(root),
            "expected": str(root / "expected.json"),
            "pid": os.getpid(),
        }), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        archive.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
