"""Where assets land on disk: local paths and download areas (spec 4.5, 4.10). No network."""

from __future__ import annotations

import posixpath
import re

from .grammar import ParsedURL, URLKind


def normalize_asset_path(path: str) -> str:
    """Posix-normalise an asset path: collapse ``./``, ``..`` and ``//``; ``.`` becomes "".

    A trailing "/" survives, because it is what makes a location a folder.
    """
    absolute = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not absolute:
                parts.append(part)
            continue
        parts.append(part)
    result = "/".join(parts)
    if absolute:
        result = "/" + result
    if path.endswith("/") and result and not result.endswith("/"):
        result += "/"
    return result


def _starts_with_ci(text: str, prefix: str) -> bool:
    """Case-insensitive ``startswith``, the way the server's path filter compares."""
    return text[: len(prefix)].casefold() == prefix.casefold()


def _url_dir(path: str) -> str:
    """D of spec 4.5: the directory part of a folder/prefix URL path, no surrounding "/"."""
    return posixpath.dirname(path.strip("/"))


def relative_download_path(parsed: ParsedURL, asset_path: str, *, preserve_tree: bool) -> str:
    """Where an asset lands, relative to ``<out>/<output_prefix>`` (spec 4.5).

    Unlike dandi-cli, an asset whose path differs in case from the URL's directory part (the
    server's ``path=`` filter ignores case) is stripped case-insensitively instead of
    failing an assertion.
    """
    p = asset_path.lstrip("/")
    if preserve_tree or parsed.kind in (URLKind.DANDISET, URLKind.GLOB):
        return p
    if parsed.is_single_asset:
        return posixpath.basename(p)
    d = _url_dir(parsed.path or "")
    if d and _starts_with_ci(p, d + "/"):
        return p[len(d) + 1 :]
    return p


def output_prefix(parsed: ParsedURL, *, preserve_tree: bool) -> str:
    """The per-URL folder under the output directory: ``<id>`` or ""."""
    if parsed.dandiset_id is None:
        return ""
    if parsed.kind is URLKind.DANDISET or preserve_tree:
        return parsed.dandiset_id
    return ""


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """The server's glob: anchored, case-insensitive, only ``*`` is special (crossing "/")."""
    return re.compile(".*".join(re.escape(s) for s in pattern.split("*")), re.I | re.S)


def in_download_area(parsed: ParsedURL, rel_path: str, *, preserve_tree: bool = False) -> bool:
    """Could an asset selected by ``parsed`` be downloaded to ``rel_path``? (sync, spec 4.10)

    ``rel_path`` is relative to ``<out>/<output_prefix>``. This implements what dandi-cli's
    documentation intends for nested folder/prefix URLs: for ``foo/bar/`` the files land
    under ``bar/``, so only ``bar/...`` is in the area (dandi-cli tested ``foo/``). Matching
    ignores case, as the server's filters do. Single-asset URLs own no area.
    """
    rel = rel_path.lstrip("/")
    if parsed.kind is URLKind.DANDISET:
        return True
    if parsed.is_single_asset or not parsed.path:
        return False
    if parsed.kind is URLKind.GLOB:
        return _glob_regex(parsed.path).fullmatch(rel) is not None
    u = parsed.path.lstrip("/")
    if not preserve_tree:
        d = _url_dir(u)
        if d:
            u = u[len(d) + 1 :]
    return _starts_with_ci(rel, u)
