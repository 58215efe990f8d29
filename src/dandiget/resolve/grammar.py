"""Resource identifiers, without the network: the pattern table and what a match selects.

The accepted shapes, their order and their error messages are dandi-cli's (``dandi download``
users paste the same URLs and scripts match on the messages). Deliberate differences:

* ``<INSTANCE>:<id>`` accepts the instance name in any case (dandi-cli's docs promise it);
* ``https://identifiers.org/DANDI:<id>/draft`` is accepted (mapped locally, identifiers.org
  cannot resolve it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from urllib.parse import unquote

from ..errors import UnknownURLError
from ..instances import Instance, known_instances


class URLKind(str, Enum):
    """What a parsed identifier selects (dandi-cli's ParsedDandiURL subclasses)."""

    DANDISET = "dandiset"  # DandisetURL
    ASSET_ID = "asset-id"  # AssetIDURL: asset id within a dandiset version
    BASE_ASSET_ID = "base-asset-id"  # BaseAssetIDURL: /api/assets/<id>/...
    ITEM = "item"  # AssetItemURL
    FOLDER = "folder"  # AssetFolderURL
    PREFIX = "prefix"  # AssetPathPrefixURL
    GLOB = "glob"  # AssetGlobURL


_SINGLE_ASSET_KINDS = frozenset({URLKind.ITEM, URLKind.ASSET_ID, URLKind.BASE_ASSET_ID})
_MULTI_ASSET_KINDS = frozenset({URLKind.FOLDER, URLKind.PREFIX, URLKind.GLOB})


@dataclass(frozen=True)
class ParsedURL:
    """A resolved resource identifier. Equality ignores ``original`` (as dandi-cli's objects)."""

    kind: URLKind
    instance: Instance
    dandiset_id: str | None = None
    version_id: str | None = None
    asset_id: str | None = None
    #: Location / prefix / glob exactly as dandi-cli keeps it (folder paths end with "/").
    path: str | None = None
    #: What the user typed (before any redirect).
    original: str = field(default="", compare=False)

    @property
    def is_single_asset(self) -> bool:
        return self.kind in _SINGLE_ASSET_KINDS

    @property
    def is_multi_asset(self) -> bool:
        return self.kind in _MULTI_ASSET_KINDS


# --------------------------------------------------------------------------------------------
# The pattern table (order matters: the first full match wins)
# --------------------------------------------------------------------------------------------

_ID = r"(?P<dandiset_id>[0-9]{6})"
_VERSION = r"(?P<version>draft|[0-9]+\.[0-9]+\.[0-9]+)"
# The host part excludes whitespace so that garbage never reaches the network.
_SERVER = r"(?P<server>https?://[^/\s]+/(?:api/)?)"
_ASSET_ID = r"(?P<asset_id>[^?/]+)"
_VERSIONED = rf"{_SERVER}dandisets/{_ID}/versions/{_VERSION}/assets/"


class _Action(Enum):
    """What to do when a pattern matches."""

    INSTANCE_PREFIX = "instance-prefix"  # NAME:<id>; an unknown NAME means "no match"
    REDIRECT_PASS = "redirect-pass"  # follow redirects; without one keep matching
    IDENTIFIERS = "identifiers"  # identifiers.org: follow redirects, else map locally
    SERVER = "server"  # an instance URL: look the server up
    IGNORE = "ignore"  # listed in the help but never acted on (dandi-cli's dead branch)
    DANDI_SCHEME = "dandi-scheme"  # dandi://NAME/...; an unknown NAME is an error
    REDIRECT_ONLY = "redirect-only"  # any other http(s) URL: it must redirect somewhere


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    action: _Action
    display: str


_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(
        re.compile(rf"(?P<instance_name>[-\w.]+):{_ID}(?:/{_VERSION})?"),
        _Action.INSTANCE_PREFIX,
        "<INSTANCE>:<dandiset id>[/<version>]",
    ),
    _Pattern(
        re.compile(r"https?://gui\.dandiarchive\.org/.*"),
        _Action.REDIRECT_PASS,
        "https://gui.dandiarchive.org/...",
    ),
    _Pattern(
        re.compile(rf"https?://identifiers\.org/DANDI:{_ID}(?:/{_VERSION})?", re.I),
        _Action.IDENTIFIERS,
        "https://identifiers.org/DANDI:<dandiset id>[/<version>]",
    ),
    _Pattern(
        re.compile(
            rf"{_SERVER}(?:#/)?dandiset/{_ID}(?:/{_VERSION})?"
            r"(?:/(?:files(?:\?location=(?P<gui_location>.*))?)?)?"
        ),
        _Action.SERVER,
        "https://<server>[/api]/[#/]dandiset/<dandiset id>[/<version>][/files[?location=<path>]]",
    ),
    _Pattern(
        re.compile(r"https?://[^/]*dandiarchive-org\.netlify\.app/.*"),
        _Action.IGNORE,
        "https://*dandiarchive-org.netlify.app/...",
    ),
    _Pattern(
        re.compile(rf"{_SERVER}dandisets/{_ID}(?:/(?:versions(?:/{_VERSION})?/?)?)?"),
        _Action.SERVER,
        "https://<server>[/api]/dandisets/<dandiset id>[/versions[/<version>]]",
    ),
    _Pattern(
        re.compile(rf"{_SERVER}assets/{_ASSET_ID}(?:/(?:download/?)?)?"),
        _Action.SERVER,
        "https://<server>[/api]/assets/<asset id>[/download]",
    ),
    _Pattern(
        re.compile(rf"{_VERSIONED}{_ASSET_ID}(?:/(?:download/?)?)?"),
        _Action.SERVER,
        "https://<server>[/api]/dandisets/<dandiset id>/versions/<version>"
        "/assets/<asset id>[/download]",
    ),
    _Pattern(
        re.compile(rf"{_VERSIONED}\?path=(?P<path>[^&]+)"),
        _Action.SERVER,
        "https://<server>[/api]/dandisets/<dandiset id>/versions/<version>/assets/?path=<path>",
    ),
    _Pattern(
        re.compile(rf"{_VERSIONED}\?glob=(?P<glob>[^&]+)"),
        _Action.SERVER,
        "https://<server>[/api]/dandisets/<dandiset id>/versions/<version>/assets/?glob=<glob>",
    ),
    _Pattern(
        re.compile(
            rf"dandi://(?P<instance_name>[-\w._]+)/{_ID}(?:@{_VERSION})?(?:/(?P<location>.*))?"
        ),
        _Action.DANDI_SCHEME,
        "dandi://<instance name>/<dandiset id>[@<version>][/<path>]",
    ),
    _Pattern(re.compile(r"https?://.*"), _Action.REDIRECT_ONLY, "https://<server>/..."),
)

#: The lines of the "Accepted resource identifier patterns:" help text, in matching order.
ACCEPTED_PATTERNS: list[str] = [p.display for p in _PATTERNS]
#: The whole help block, as shown by ``--help`` and in :class:`UnknownURLError` messages.
ACCEPTED_PATTERNS_HELP = "Accepted resource identifier patterns:" + "".join(
    f"\n - {line}" for line in ACCEPTED_PATTERNS
)

def _unknown_url(url: str) -> UnknownURLError:
    return UnknownURLError(
        f"We do not know how to map URL {url} to our servers.\n{ACCEPTED_PATTERNS_HELP}"
    )


def _unknown_instance(name: str) -> UnknownURLError:
    valid = ", ".join(sorted(known_instances()))
    return UnknownURLError(f"Unknown instance {name!r}.  Valid instances: {valid}")


# --------------------------------------------------------------------------------------------
# From a match to a ParsedURL (no network)
# --------------------------------------------------------------------------------------------


def _location(groups: Mapping[str, str | None], glob: bool) -> str:
    """The asset location carried by a GUI ``?location=`` or a ``dandi://`` path.

    A GUI location always names a folder (a "/" is appended) unless in glob mode.
    """
    gui = groups.get("gui_location")
    if gui is not None:
        loc = unquote(gui)
        if not loc.endswith("/") and not glob:
            loc += "/"
        return loc.lstrip("/")
    raw = groups.get("location")
    return unquote(raw).lstrip("/") if raw else ""


def _classify(instance: Instance, groups: Mapping[str, str | None], glob: bool) -> ParsedURL:
    """dandi-cli's decision list from a match's groups to a URL kind (spec 2.4)."""
    dandiset_id = groups.get("dandiset_id")
    version_id = groups.get("version")
    common: dict[str, Any] = {
        "instance": instance,
        "dandiset_id": dandiset_id,
        "version_id": version_id,
    }
    location = _location(groups, glob)
    asset_id = groups.get("asset_id")
    if location:
        if glob:
            kind = URLKind.GLOB
        elif location.endswith("/"):
            kind = URLKind.FOLDER
        else:
            kind = URLKind.ITEM
        return ParsedURL(kind, path=location, **common)
    if asset_id:
        if dandiset_id is None:
            return ParsedURL(URLKind.BASE_ASSET_ID, instance, asset_id=asset_id)
        return ParsedURL(URLKind.ASSET_ID, asset_id=asset_id, **common)
    if groups.get("path"):
        return ParsedURL(URLKind.PREFIX, path=groups["path"], **common)
    if groups.get("glob"):
        return ParsedURL(URLKind.GLOB, path=groups["glob"], **common)
    return ParsedURL(URLKind.DANDISET, **common)


def _instance_by_name(name: str) -> Instance | None:
    return known_instances().get(name.lower())
