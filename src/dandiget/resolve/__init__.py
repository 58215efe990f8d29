"""Resource identifiers: turn what the user typed into "which instance, Dandiset, version, assets".

Three jobs, three modules: :mod:`.grammar` (the URL forms, no network), :mod:`.resolver`
(redirects and server lookups) and :mod:`.layout` (where assets land on disk).
"""

from .grammar import ACCEPTED_PATTERNS, ACCEPTED_PATTERNS_HELP, ParsedURL, URLKind
from .layout import (
    in_download_area,
    normalize_asset_path,
    output_prefix,
    relative_download_path,
)
from .resolver import (
    MAX_REDIRECTS,
    REDIRECT_HEAD_TIMEOUT,
    clear_instance_cache,
    known_instance_for_url,
    parse_url,
    resolve_url,
)

__all__ = [
    "ACCEPTED_PATTERNS",
    "ACCEPTED_PATTERNS_HELP",
    "MAX_REDIRECTS",
    "REDIRECT_HEAD_TIMEOUT",
    "ParsedURL",
    "URLKind",
    "clear_instance_cache",
    "in_download_area",
    "known_instance_for_url",
    "normalize_asset_path",
    "output_prefix",
    "parse_url",
    "relative_download_path",
    "resolve_url",
]
