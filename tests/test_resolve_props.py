"""Property tests for resource-identifier parsing and the local path rules."""

from __future__ import annotations

import posixpath
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dandiget.errors import UnknownURLError
from dandiget.instances import known_instances
from dandiget.resolve import (
    ParsedURL,
    URLKind,
    in_download_area,
    normalize_asset_path,
    parse_url,
    relative_download_path,
)

INSTANCE_NAMES = sorted(known_instances())
DANDI = known_instances()["dandi"]

dandiset_ids = st.integers(0, 999_999).map(lambda n: f"{n:06d}")
published = st.builds(
    lambda y, m, d, hh, mm: f"0.{y:02d}{m:02d}{d:02d}.{hh:02d}{mm:02d}",
    st.integers(20, 99),
    st.integers(1, 12),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
)
versions = st.one_of(st.none(), st.just("draft"), published)
# Path segments: anything printable but "/", never "." or ".." (asset paths are normalised).
segments = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/"),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))
asset_paths = st.lists(segments, min_size=1, max_size=5).map("/".join)


def random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if f else c for c, f in zip(text, flips, strict=True))


@st.composite
def dandi_urls(draw: st.DrawFn) -> tuple[str, str, str, str | None, str]:
    name = draw(st.sampled_from(INSTANCE_NAMES))
    dandiset_id = draw(dandiset_ids)
    version = draw(versions)
    path = draw(st.one_of(st.just(""), asset_paths, asset_paths.map(lambda p: p + "/")))
    url = f"dandi://{random_case(draw, name)}/{dandiset_id}"
    if version is not None:
        url += f"@{version}"
    if path or draw(st.booleans()):
        url += "/" + quote(path, safe="/")
    return url, name, dandiset_id, version, path


@settings(max_examples=150, deadline=None)
@given(dandi_urls(), st.booleans())
def test_dandi_url_round_trip(case: tuple[str, str, str, str | None, str], glob: bool) -> None:
    url, name, dandiset_id, version, path = case
    parsed = parse_url(url, glob=glob)
    if not path:
        kind = URLKind.DANDISET
    elif glob:
        kind = URLKind.GLOB
    else:
        kind = URLKind.FOLDER if path.endswith("/") else URLKind.ITEM
    expected = ParsedURL(kind, known_instances()[name], dandiset_id, version, None, path or None)
    assert parsed == expected
    assert parsed.original == url


@settings(max_examples=100, deadline=None)
@given(st.data(), st.sampled_from(INSTANCE_NAMES), dandiset_ids, versions)
def test_instance_prefix_any_case(
    data: st.DataObject, name: str, dandiset_id: str, version: str | None
) -> None:
    prefix = data.draw(
        st.builds(
            lambda flips: "".join(c.upper() if f else c for c, f in zip(name, flips, strict=True)),
            st.lists(st.booleans(), min_size=len(name), max_size=len(name)),
        )
    )
    url = f"{prefix}:{dandiset_id}" + (f"/{version}" if version else "")
    parsed = parse_url(url)
    assert parsed == ParsedURL(URLKind.DANDISET, known_instances()[name], dandiset_id, version)


def _no_network(text: str) -> bool:
    """Only http(s) URLs can cost a request; those are not garbage tests."""
    return not text.startswith(("http://", "https://"))


garbage = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda prefix, rest: prefix + rest,
        st.sampled_from(
            [
                "dandi://",
                "dandi://dandi/",
                "dandi://nope/000001",
                "DANDI:",
                "DANDI:00002",
                "dandi:000001/",
                "LINC:000001/draft/",
                "identifiers.org/",
                "dandi://dandi/000001@",
                "dandi://dandi/00000",
            ]
        ),
        st.text(max_size=30),
    ),
).filter(_no_network)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(garbage)
def test_garbage_raises_unknown_url_error_only(text: str) -> None:
    try:
        parsed = parse_url(text)
    except UnknownURLError:
        return
    # The rare generated string that is a valid identifier must round-trip sensibly.
    assert isinstance(parsed, ParsedURL)
    assert parsed.dandiset_id is not None and len(parsed.dandiset_id) == 6


def ascii_upper(text: str) -> str:
    """Upper-case ASCII letters only (``"ß".upper()`` is ``"SS"``: not a case variant)."""
    return text.translate(_UPPER)


_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([URLKind.FOLDER, URLKind.PREFIX]),
    asset_paths,
    st.lists(segments, max_size=3),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_downloaded_paths_are_in_the_sync_area(
    kind: URLKind, url_path: str, rest: list[str], slash: bool, preserve_tree: bool, shout: bool
) -> None:
    """Whatever the server returns for a folder/prefix URL lands inside its sync area."""
    if kind is URLKind.FOLDER:
        url_path += "/"
        rest = rest or ["x"]  # the server returns only assets strictly under the folder
        suffix = "/".join(rest)
    else:
        suffix = ("/" if slash and rest else "") + "/".join(rest)
    # The server's path filter ignores case: the asset may differ in case from the URL.
    asset = (ascii_upper(url_path) if shout else url_path) + suffix
    parsed = ParsedURL(kind, DANDI, "000001", "draft", path=url_path)
    rel = relative_download_path(parsed, asset, preserve_tree=preserve_tree)
    assert in_download_area(parsed, rel, preserve_tree=preserve_tree)
    if preserve_tree:
        assert rel == asset
    else:
        # exactly the directory part of the URL is dropped
        dropped = posixpath.dirname(url_path.strip("/"))
        assert rel == (asset[len(dropped) + 1 :] if dropped else asset)


@settings(max_examples=200, deadline=None)
@given(asset_paths, st.data())
def test_glob_made_from_a_path_matches_it(path: str, data: st.DataObject) -> None:
    """Replacing any substrings by '*' (and changing case) keeps the path in the glob's area."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(path)), max_size=4)))
    pattern, last = "", 0
    for a, b in zip(cuts[::2], cuts[1::2], strict=False):
        pattern += path[last:a] + "*"
        last = b
    pattern += path[last:]
    pattern = data.draw(st.sampled_from([pattern, ascii_upper(pattern)]))
    parsed = ParsedURL(URLKind.GLOB, DANDI, "000001", "draft", path=pattern)
    assert in_download_area(parsed, path)
    assert relative_download_path(parsed, path, preserve_tree=False) == path


relative_paths = st.lists(
    st.sampled_from(["a", "b", ".", "..", "", "c.d"]), min_size=1, max_size=8
).map("/".join)


@given(relative_paths)
def test_normalize_asset_path_agrees_with_normpath(path: str) -> None:
    got = normalize_asset_path(path)
    assert normalize_asset_path(got) == got
    if path.startswith("//"):
        return  # POSIX keeps exactly two leading slashes; asset paths collapse them
    expected = posixpath.normpath(path) if path else "."
    expected = "" if expected == "." else expected
    if path.endswith("/") and expected and not expected.endswith("/"):
        expected += "/"
    assert got == expected


@pytest.mark.parametrize("name", INSTANCE_NAMES)
def test_every_known_instance_round_trips_through_its_urls(name: str) -> None:
    inst = known_instances()[name]
    assert parse_url(f"{inst.api}/dandisets/000001/").instance == inst
    assert parse_url(f"dandi://{name}/000001").instance == inst
    if inst.gui:
        assert parse_url(f"{inst.gui}/#/dandiset/000001").instance == inst
