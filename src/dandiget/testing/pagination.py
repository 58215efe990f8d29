"""DRF-style pagination: the two paginators of the Archive and DRF's URL rewriting.

``next``/``previous`` are absolute URLs built from the request's Host, with the query
re-encoded *sorted* (DRF's ``replace_query_param``), because dandi-cli compares ``next`` with
"page 1 URL plus ``page=2``" to decide whether it may fetch pages in parallel.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


#: What Heroku's router sends when a worker did not answer within 30 s (error H12).
HEROKU_TIMEOUT_PAGE = (
    b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Application Error</title>"
    b"</head><body><iframe src=\"//www.herokucdn.com/error-pages/application-error.html\">"
    b"</iframe></body></html>\n")


@dataclass(eq=False)
class PageHook:
    """Run ``action`` after the asset listing's page ``page`` of ``dandiset`` was computed
    (before it is sent, so the next request sees the change); ``times`` None is always."""

    dandiset: str
    page: int
    action: Callable[[], Any]
    times: int | None = 1
    hits: int = 0


@dataclass
class ListingBehaviour:
    """How the asset listing is unkind, as the real one is (archive-api §6, §7).

    ``metadata_row_budget``: a ``metadata=true`` page with more rows than this is not
    produced in time and the router answers 503 (gunicorn's 15 s / Heroku's 30 s cut, scaled
    to rows). ``hooks``: draft edits between pages, which shift page-number pagination.
    """

    metadata_row_budget: int | None = None
    hooks: list[PageHook] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def too_big(self, with_metadata: bool, rows: int) -> bool:
        budget = self.metadata_row_budget
        return with_metadata and budget is not None and rows > budget

    def due(self, dandiset: str, page: int) -> list[PageHook]:
        """The hooks to run for this page (each hit counted)."""
        with self._lock:
            due = [h for h in self.hooks if h.dandiset == dandiset and h.page == page
                   and (h.times is None or h.hits < h.times)]
            for h in due:
                h.hits += 1
        return due


def rows_on_page(total: int, raw_page: str | None, raw_size: str | None) -> int:
    """How many rows a lazy page would hold (0 past the end; InvalidPage as the paginator)."""
    size = page_size_of(raw_size)
    start = (page_number_of(raw_page) - 1) * size
    return max(0, min(size, total - start))


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
