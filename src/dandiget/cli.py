"""``dandiget`` command line: ``dandiget download`` takes every option of ``dandi download``."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .errors import DownloadFailed
from .options import DownloadExisting, DownloadFormat, PathType, SyncMode

log = logging.getLogger("dandiget")

DOWNLOAD_KINDS = ("assets", "dandiset.yaml", "all")


class LogLevel(click.ParamType):
    """A level name (DEBUG, info, ...) or, as dandi-cli accepts, a number (``-l 10``)."""

    name = "LEVEL"
    NAMES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            return int(text)
        if text.upper() in self.NAMES:
            return int(getattr(logging, text.upper()))
        self.fail(f"{value!r} is not a log level: use one of {', '.join(self.NAMES)} "
                  "(any case) or a number such as 10", param, ctx)


def _setup_logging(level: int) -> None:
    logging.basicConfig(
        level=level,
        # dandi-cli's console format: at 80 columns, process and thread ids only crowd out
        # the message (-l DEBUG keeps the logger name, which says which library spoke)
        format=("%(asctime)s [%(levelname)-8s] %(name)s %(message)s" if level <= logging.DEBUG
                else "%(asctime)s [%(levelname)-8s] %(message)s"),
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )
    # aiohttp and asyncio are chatty at DEBUG; keep them at our level or quieter.
    logging.getLogger("asyncio").setLevel(max(logging.INFO, logging.getLogger().level))


@click.group()
@click.version_option(__version__, prog_name="dandiget")
@click.option("-l", "--log-level", envvar="DANDI_LOG_LEVEL", default="INFO", show_default=True,
              type=LogLevel(),
              help="Log level: DEBUG, INFO, WARNING, ERROR, CRITICAL or a number (10 = DEBUG), "
                   "as dandi-cli takes it (also DANDI_LOG_LEVEL). Logs go to stderr; no log "
                   "files are kept.")
def main(log_level: int) -> None:
    """Fast, verified, resumable downloads from the DANDI Archive."""
    _setup_logging(log_level)


class JobsParam(click.ParamType):
    name = "N[:M]"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, int | None]:
        if isinstance(value, tuple):
            return value
        try:
            n, sep, m = str(value).partition(":")
            return int(n), (int(m) if sep else None)
        except ValueError:
            self.fail("Value must be of the form `N[:M]`", param, ctx)


class DownloadKinds(click.ParamType):
    name = "LIST"

    def convert(self, value: Any, param: Any, ctx: Any) -> set[str]:
        if isinstance(value, set):
            return value
        kinds = {v.strip() for v in str(value).split(",")}
        for k in kinds:
            if k not in DOWNLOAD_KINDS:
                self.fail(f"{k!r}: invalid value; must be one of: {', '.join(DOWNLOAD_KINDS)}",
                          param, ctx)
        return kinds


@main.command()
@click.option("-o", "--output-dir", default=".", show_default=True,
              type=click.Path(exists=True, file_okay=False, dir_okay=True, writable=True),
              help="Directory to download into.")
@click.option("-e", "--existing", default="error", show_default=True,
              type=click.Choice([e.value for e in DownloadExisting], case_sensitive=False),
              help="What to do with files that already exist locally: error, skip, overwrite, "
                   "overwrite-different (compare digests), refresh (compare size and mtime).")
@click.option("-f", "--format", "fmt", default="pyout", show_default=True,
              type=click.Choice([f.value for f in DownloadFormat]),
              help="pyout: live table (plain lines when not a terminal); debug: one record "
                   "per line; json: JSON lines (schema dandiget.event/1); plain: periodic "
                   "progress lines.")
@click.option("--path-type", default="exact", show_default=True,
              type=click.Choice([p.value for p in PathType]),
              help="Whether paths in dandi:// and GUI URLs are exact or glob patterns.")
@click.option("-J", "--jobs", "jobs", default=None, type=JobsParam(),
              help="Assets downloaded at once, and optionally Zarr entries at once per Zarr. "
                   "Default: found while running, from 6 up as long as it pays.")
@click.option("--download", "download_kinds", default="all", show_default=True,
              type=DownloadKinds(),
              help="Comma-separated list of what to download: dandiset.yaml, assets, all.")
@click.option("--preserve-tree", is_flag=True,
              help="Keep full asset paths and dandiset.yaml also for partial URLs.")
@click.option("--sync", type=click.Choice([s.value for s in SyncMode]), is_flag=False,
              flag_value="ask", default=None,
              help="Delete local assets that no longer exist on the server (ask, or do).")
@click.option("--zarr", "zarr_filters", multiple=True, metavar="TYPE:PATTERN",
              help="Download only matching Zarr entries: glob:PATTERN, path:PATH, "
                   "regex:REGEX or metadata. Repeat to combine (OR).")
@click.option("-i", "--dandi-instance", envvar="DANDI_INSTANCE", default=None,
              metavar="NAME|URL", help="DANDI instance the URLs must point to.")
@click.option("--dry-run", is_flag=True,
              help="Resolve, list and plan; print what would be downloaded, skipped and "
                   "deleted; write nothing.")
@click.option("--ignore-free-space", is_flag=True,
              help="Start even if the output folder's filesystem seems too small.")
@click.option("--dask", "dask_address", envvar="DANDIGET_DASK", default=None,
              metavar="ADDRESS|local:N",
              help="Spread the download over a Dask cluster: a running scheduler "
                   "(tcp://head:8786) or local:N worker processes. The output folder must be "
                   "shared with every worker. Needs pip install 'dandiget[dask]'.")
@click.argument("url", nargs=-1)
def download(output_dir: str, existing: str, fmt: str, path_type: str,
             jobs: tuple[int, int | None] | None, download_kinds: set[str], preserve_tree: bool,
             sync: str | None, zarr_filters: tuple[str, ...], dandi_instance: str | None,
             dry_run: bool, ignore_free_space: bool, dask_address: str | None,
             url: tuple[str, ...]) -> None:
    """Download files, folders, Zarrs or whole Dandisets from a DANDI archive.

    URL can be any form dandi download accepts: DANDI:000027[/VERSION],
    dandi://INSTANCE/ID[@VERSION][/PATH], GUI URLs, API URLs, asset URLs.
    """
    from .download import download as do_download

    urls = list(url)
    try:
        if dandi_instance:
            urls = _check_instance(dandi_instance, urls)
        get_all = "all" in download_kinds
        do_download(
            urls, output_dir,
            existing=DownloadExisting(existing.lower()),
            format=DownloadFormat(fmt),
            jobs=jobs[0] if jobs else None, jobs_per_zarr=jobs[1] if jobs else None,
            get_metadata=get_all or "dandiset.yaml" in download_kinds or preserve_tree,
            get_assets=get_all or "assets" in download_kinds or preserve_tree,
            preserve_tree=preserve_tree,
            sync=SyncMode(sync) if sync else None,
            path_type=PathType(path_type),
            dry_run=dry_run,
            zarr=zarr_filters,
            ignore_free_space=ignore_free_space,
            dask=dask_address or None,
        )
    except KeyboardInterrupt:
        click.echo("Interrupted. Partial downloads are kept and resume on the next run.",
                   err=True)
        sys.exit(130)
    except DownloadFailed as e:
        click.echo(f"Error: {e}", err=True)
        sys.exit(1)
    except click.ClickException:
        raise
    except Exception as e:
        if os.environ.get("DANDI_DEVEL"):
            raise
        raise click.ClickException(str(e)) from e


def _check_instance(value: str, urls: list[str]) -> list[str]:
    """dandi-cli's ``-i``: every URL must point to that instance; none → the cwd's dandiset."""
    from .instances import known_instances
    from .resolve import parse_url

    inst = known_instances().get(value.lower())
    if inst is None:
        inst = parse_url(f"{value.rstrip('/')}/dandiset/000000").instance if "://" in value \
            else None
    if inst is None:
        raise click.UsageError(f"Unknown instance {value!r}")
    if urls:
        for u in urls:
            if parse_url(u).instance != inst:
                raise click.UsageError(f"{u} does not point to {value!r} instance")
        return urls
    yaml_path = Path("dandiset.yaml")
    if yaml_path.exists():
        from .dandiset_yaml import read_dandiset_yaml

        md = read_dandiset_yaml(yaml_path) or {}
        ident = str(md.get("identifier", "")).split(":")[-1]
        if ident:
            if inst.gui:
                return [f"{inst.gui}/#/dandiset/{ident}/draft"]
            return [f"{inst.api}/dandisets/{ident}/"]
    return urls


def _print_findings(found: object, as_json: bool) -> None:
    import json

    from .inspect import Findings

    assert isinstance(found, Findings)
    if as_json:
        click.echo(json.dumps({**found.counts(), "clean": found.clean,
                               "details": found.lines()}))
        return
    for line in found.lines():
        click.echo(line)
    summary = ", ".join(f"{n} {k}" for k, n in found.counts().items() if n)
    click.echo(f"Summary: {summary or 'nothing to check'}")


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.argument("url", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify(path: str, url: str | None, as_json: bool) -> None:
    """Re-hash a local copy and compare it with the server (URL) or, offline, with the
    digests dandiget recorded when it downloaded each file.

    PATH is the folder given to `download -o` (or the dandiset's folder in it). Reports
    DIFFERENT, MISSING, EXTRA and UNVERIFIED assets (a Zarr is one); exits 1 when anything
    differs, 0 when the copy matches.
    """
    from .inspect import verify as do_verify

    try:
        found = do_verify(path, url)
    except Exception as e:
        raise click.ClickException(str(e)) from e
    _print_findings(found, as_json)
    if not found.clean:
        sys.exit(1)


@main.command()
@click.argument("url")
@click.option("-o", "--output-dir", default=".", show_default=True,
              type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(url: str, output_dir: str, as_json: bool) -> None:
    """What `download URL -o OUTPUT_DIR -e refresh --sync` would change, from the listing,
    file sizes and times and the local state: no file is read (`verify` reads them).

    Same words as `verify`: DIFFERENT, MISSING, EXTRA. Exits 1 when anything differs (like
    `git diff --exit-code`), 0 when the copy is up to date.
    """
    from .inspect import status as do_status

    try:
        found = do_status(url, output_dir)
    except Exception as e:
        raise click.ClickException(str(e)) from e
    _print_findings(found, as_json)
    if not found.clean:
        sys.exit(1)


@main.command()
@click.option("-o", "--output-dir", type=click.Path(file_okay=False), default=None,
              help="Where to download the demo dandiset and keep it (default: a temporary "
                   "folder, removed at the end).")
@click.option("-f", "--format", "fmt", default="pyout", show_default=True,
              type=click.Choice([f.value for f in DownloadFormat]))
def demo(output_dir: str | None, fmt: str) -> None:
    """Download a sample dandiset from the built-in test archive (no network needed).

    Starts the test archive on a free loopback port with nested files, a two-part
    (> 64 MiB) file and a Zarr; downloads it with the live display, verifies every byte,
    then runs again to show an instant no-op re-run.
    """
    import shutil
    import tempfile

    from .download import download as do_download
    from .instances import register_instance
    from .testing import TestArchive, demo_spec

    temporary = output_dir is None
    out = Path(output_dir or tempfile.mkdtemp(prefix="dandiget-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        with TestArchive(demo_spec()) as archive:
            register_instance(archive.instance)
            url = f"dandi://{archive.instance.name}/000001@draft"
            click.echo(f"Test archive API at {archive.api_url}, content at {archive.content_url}")
            click.echo(f"$ dandiget download {url} -o {out}")
            try:
                first = do_download(url, out, format=DownloadFormat(fmt))
                click.echo(f"$ dandiget download {url} -o {out} --existing refresh")
                again = do_download(url, out, format=DownloadFormat(fmt),
                                    existing=DownloadExisting.REFRESH)
            except DownloadFailed as e:
                click.echo(f"Error: {e}", err=True)
                sys.exit(1)
        n = first.count("downloaded")
        click.echo(f"Downloaded {n} file{'' if n == 1 else 's'} "
                   f"({first.bytes_downloaded:,} bytes, every byte verified) into "
                   f"{out / '000001'} in {first.duration:.1f} s; the re-run skipped "
                   f"{again.count('skipped')} in {again.duration:.2f} s.")
    finally:
        if temporary:  # the demo's ~72 MB are not worth keeping unless asked for
            shutil.rmtree(out, ignore_errors=True)
    if temporary:
        click.echo(f"Removed {out} (use -o DIR to keep the files).")


if __name__ == "__main__":  # pragma: no cover
    main()
