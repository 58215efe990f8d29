"""Run the test archive standalone: ``python -m dandiget.testing serve --demo``.

``serve`` prints the API and content URLs (and one JSON line for scripts to parse) and serves
until Ctrl-C/SIGTERM. ``materialize`` writes the bucket layout to a directory so a static
server (nginx) can serve the content while ``serve --content-base-url`` serves the API.
"""

from __future__ import annotations

import argparse
import errno
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dandiget.testing.demo import TESTER_TOKEN, demo_spec, scale_spec
from dandiget.testing.model import ArchiveSpec
from dandiget.testing.server import TestArchive, dandiset_from_directory


def build_spec(args: argparse.Namespace) -> ArchiveSpec:
    """The spec selected by ``--demo``/``--spec``/``--from-dir`` plus the scale options."""
    if args.spec:
        spec = ArchiveSpec.from_dict(json.loads(Path(args.spec).read_text()))
    elif args.from_dir:
        spec = ArchiveSpec(dandisets=[dandiset_from_directory(args.from_dir, args.identifier)])
    elif args.demo or not (args.scale_assets or args.scale_zarr):
        spec = demo_spec()
    else:
        spec = ArchiveSpec()
    if args.scale_assets or args.scale_zarr:
        extra = scale_spec(args.scale_assets, args.scale_zarr, asset_size=args.scale_asset_size,
                           entry_size=args.zarr_entry_size)
        spec.dandisets.extend(extra.dandisets)
        names = {u.name for u in spec.users}
        spec.users.extend(u for u in extra.users if u.name not in names)
    return spec


def _add_spec_options(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--demo", action="store_true", help="the demo dandiset 000001 (default)")
    src.add_argument("--spec", metavar="FILE", help="JSON spec (ArchiveSpec.to_dict format)")
    src.add_argument("--from-dir", metavar="DIR", help="serve a local tree as one dandiset")
    p.add_argument("--identifier", default="000001", help="dandiset id for --from-dir")
    p.add_argument("--scale-assets", type=int, default=0, metavar="N",
                   help="add dandiset 000100 with N generated blobs")
    p.add_argument("--scale-asset-size", type=int, default=64, metavar="BYTES")
    p.add_argument("--scale-zarr", type=int, default=0, metavar="N",
                   help="add dandiset 000101 with a zarr of N generated entries")
    p.add_argument("--zarr-entry-size", type=int, default=64, metavar="BYTES")


def serve(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    spec = build_spec(args)
    archive = TestArchive(spec, host=args.host, api_port=args.port,
                          content_port=args.content_port, content_base_url=args.content_base_url)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        archive.start()
    except OSError as e:  # most often: the port is taken
        ports = ", ".join(str(p) for p in (args.port, args.content_port) if p)
        where = f"{args.host}:{ports}" if ports else args.host
        if e.errno == errno.EADDRINUSE:
            print(f"error: cannot listen on {where}: address already in use (choose another "
                  "--port/--content-port, or 0 for a free one)", file=sys.stderr)
        else:
            print(f"error: cannot listen on {where}: {e.strerror or e}", file=sys.stderr)
        return 1
    with archive:
        ids = [d.identifier for d in spec.dandisets]
        info = {"api_url": archive.api_url, "content_url": archive.content_url,
                "content_base_url": archive.site.content_base, "dandisets": ids,
                "token": TESTER_TOKEN if any(u.token == TESTER_TOKEN for u in spec.users)
                else None}
        print(f"dandiget test archive ready in {time.monotonic() - t0:.1f}s")
        print(f"  API:     {archive.api_url}")
        print(f"  content: {archive.site.content_base}")
        print(f"  dandisets: {', '.join(ids) or '(none)'}")
        if ids:
            example = f"{archive.api_url}/dandisets/{ids[0]}/versions/draft/"
            print(f"  try: dandiget download {example} -o /tmp/out")
            print(f"   or: dandi download {example} -o /tmp/out")
            print("  (without /versions/draft/ both get the latest published version, if any)")
        print("READY " + json.dumps(info), flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


def materialize(args: argparse.Namespace) -> int:
    spec = build_spec(args)
    archive = TestArchive(spec, content_base_url=args.content_base_url)
    root = archive.materialize(args.directory)
    print(f"wrote the bucket layout to {root}")
    return 0


def dump_spec(args: argparse.Namespace) -> int:
    json.dump(build_spec(args).to_dict(), sys.stdout, indent=1)
    print()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dandiget.testing",
                                     description="A DANDI-compatible test archive.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve until interrupted")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="API port (default: a free one)")
    p.add_argument("--content-port", type=int, default=0, help="content port (default: free)")
    p.add_argument("--content-base-url", help="serve contentUrl/redirects from this URL instead")
    _add_spec_options(p)
    p.set_defaults(func=serve)
    p = sub.add_parser("materialize", help="write the bucket layout to a directory")
    p.add_argument("directory")
    p.add_argument("--content-base-url", help="bucket URL baked into the manifests")
    _add_spec_options(p)
    p.set_defaults(func=materialize)
    p = sub.add_parser("spec", help="print the selected spec as JSON")
    _add_spec_options(p)
    p.set_defaults(func=dump_spec)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
