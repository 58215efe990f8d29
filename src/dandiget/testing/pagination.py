"""DRF-style pagination: the two paginators of the Archive and DRF's URL rewriting.

``next``/``previous`` are absolute URLs built from the request's Host, with the query
re-encoded *sorted* (DRF's ``replace_query_param``), because dandi-cli compares ``next`` with
"page 1 URL plus ``page=2``" to decide whether it may fetch pages in parallel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


class InvalidPage(Exception):
    """The answer is 404 ``{"detail": "Invalid page."}``."""


def page_size_of(raw: str | None) -> int:
    """DRF ``_positive_int(strict=True, cutoff=1000)``, falling back to the default."""
    try:
        n = int(raw) if raw is not None else 0
    except ValueError:
        return DEFAULT_PAGE_SIZE
    if n <= 0:
        return DEFAULT_PAGE_SIZE
    return min(n, MAX_PAGE_SIZE)


def page_number_of(raw: str | None) -> int:
    """Django's ``Paginator.validate_number`` (without the upper bound)."""
    if raw is None:
        return 1
    try:
        n = int(raw)
    except ValueError:
        raise InvalidPage from None
    if n < 1:
        raise InvalidPage
    return n


def replace_query_param(url: str, key: str, value: Any) -> str:
    base, _, query = url.partition("?")
    q = parse_qs(query, keep_blank_values=True)
    q[key] = [str(value)]
    return f"{base}?{urlencode(sorted(q.items()), doseq=True)}"


def remove_query_param(url: str, key: str) -> str:
    base, _, query = url.partition("?")
    q = parse_qs(query, keep_blank_values=True)
    q.pop(key, None)
    return f"{base}?{urlencode(sorted(q.items()), doseq=True)}"


def _previous(url: str, page: int) -> str | None:
    if page <= 1:
        return None
    if page - 1 == 1:
        return remove_query_param(url, "page")
    return replace_query_param(url, "page", page - 1)


def dandi_page(items: Sequence[T], url: str, raw_page: str | None, raw_size: str | None,
               render: Callable[[T], Any]) -> dict[str, Any]:
    """DandiPagination (DRF PageNumberPagination): ``count`` on every page; past the end is 404."""
    size = page_size_of(raw_size)
    count = len(items)
    pages = max(1, -(-count // size))
    page = pages if raw_page == "last" else page_number_of(raw_page)
    if page > pages:
        raise InvalidPage
    rows = items[(page - 1) * size:page * size]
    return {
        "count": count,
        "next": replace_query_param(url, "page", page + 1) if page < pages else None,
        "previous": _previous(url, page),
        "results": [render(r) for r in rows],
    }


def lazy_page(items: Sequence[T], url: str, raw_page: str | None, raw_size: str | None,
              render: Callable[[T], Any]) -> dict[str, Any]:
    """LazyPagination: ``count`` only on page 1; a page past the end is 200 and empty."""
    size = page_size_of(raw_size)
    page = page_number_of(raw_page)
    start = (page - 1) * size
    rows = items[start:start + size + 1]
    has_next = len(rows) > size
    return {
        "count": len(items) if page == 1 else None,
        "next": replace_query_param(url, "page", page + 1) if has_next else None,
        "previous": _previous(url, page),
        "results": [render(r) for r in rows[:size]],
    }
