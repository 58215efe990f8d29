"""What the asset-list filters and the folder view mean (``path``, ``glob``, ``order``, ``paths/``).

Semantics from dandi-archive: ``path`` is a case-insensitive prefix (not folder-aware) unless
an asset has exactly that path; ``glob`` knows only ``*``, which crosses ``/``; ``order=path``
is bytewise.
"""

from __future__ import annotations

from dandiget.testing.records import Asset, Version


def glob_matches(pattern: str, path: str) -> bool:
    """The Archive's glob: anchored, case-insensitive, only ``*`` is special (it matches any
    run of characters, ``/`` included). Deliberately not the client's regex translation
    (:func:`dandiget.resolve._glob_regex`), so the two can be checked against each other."""
    p, s = pattern.lower(), path.lower()
    if "*" not in p:
        return s == p
    head, *middle, tail = p.split("*")
    if len(s) < len(head) + len(tail) or not (s.startswith(head) and s.endswith(tail)):
        return False
    pos, end = len(head), len(s) - len(tail)
    for piece in middle:  # leftmost matches leave the most room for what follows
        found = s.find(piece, pos, end)
        if found < 0:
            return False
        pos = found + len(piece)
    return True


def filter_assets(v: Version, order: str, path: str | None, glob: str | None,
                  zarr_only: bool) -> list[Asset]:
    """The asset list filters: ``path`` (exact match wins, else case-insensitive prefix),
    ``glob`` and ``zarr``, over the version's assets in ``order``."""
    assets = v.sorted_assets(order)
    if path:
        exact = v.by_path.get(path)
        if exact is not None:
            assets = [exact]
        else:
            up = path.upper()
            assets = [a for a in assets if a.path.upper().startswith(up)]
    if glob:
        assets = [a for a in assets if glob_matches(glob, a.path)]
    if zarr_only:
        assets = [a for a in assets if a.zarr is not None]
    return assets


def path_rows(v: Version, prefix: str) -> list[tuple[str, int, int, Asset | None]] | None:
    """One level of the folder tree under ``prefix``; None when the folder does not exist."""
    def build() -> list[tuple[str, int, int, Asset | None]] | None:
        lead = f"{prefix}/" if prefix else ""
        folders: dict[str, list[int]] = {}
        files: dict[str, Asset] = {}
        for a in v.assets:
            if not a.path.startswith(lead):
                continue
            rest = a.path[len(lead):]
            head, sep, _ = rest.partition("/")
            if sep:
                agg = folders.setdefault(lead + head, [0, 0])
                agg[0] += 1
                agg[1] += a.size
            else:
                files[a.path] = a
        if prefix and not folders and not files:
            return [] if prefix in v.by_path else None
        rows: list[tuple[str, int, int, Asset | None]] = [
            (p, n, s, None) for p, (n, s) in folders.items()]
        rows += [(p, 1, a.size, a) for p, a in files.items()]
        rows.sort(key=lambda r: r[0])
        return rows

    return v.cached(("paths", prefix), build)
