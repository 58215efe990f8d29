"""S3 ListObjectsV2 over the bucket (``GET /?list-type=2&prefix=zarr/<id>/``).

The Archive's bucket is publicly listable, so a client may list a Zarr straight from S3
instead of paging the API; this answers the same XML a real bucket would, over the same keys
the content host serves (blobs and Zarr entries).
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Iterator
from xml.sax.saxutils import escape

from dandiget.testing.store import Store

MAX_KEYS = 1000


def _zarr_keys(store: Store, zarr_id: str, prefix: str,
               after: str) -> Iterator[tuple[str, str, int, str]]:
    """Entries of one zarr with full key >= ``prefix`` and > ``after``, in key order."""
    z = store.zarrs.get(zarr_id)
    if z is None:
        return
    zp, e = z.prefix, z.entries

    def position(s: str, right: bool) -> int:
        if not s.startswith(zp):
            return len(e.keys) if s > zp else 0
        return (bisect.bisect_right if right else bisect.bisect_left)(e.keys, s[len(zp):])

    i = max(position(prefix, False), position(after, True) if after else 0)
    stamp = z.modified.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    for j in range(i, len(e.keys)):
        yield zp + e.keys[j], e.etag_for(j), e.served_size(j), stamp


def _all_keys(store: Store, prefix: str, after: str) -> Iterator[tuple[str, str, int, str]]:
    """(key, etag, size, LastModified) in key order, for keys > ``after`` under ``prefix``."""
    if prefix.startswith("zarr/") and prefix.count("/") >= 2:
        yield from _zarr_keys(store, prefix.split("/")[1], prefix, after)
        return
    objects: list[tuple[str, str, int, str]] = []
    for b in store.blobs.values():
        if b.key.startswith(prefix) and b.key > after:
            objects.append((b.key, b.served_etag, b.served.size,
                            b.created.strftime("%Y-%m-%dT%H:%M:%S.000Z")))
    for z in store.zarrs.values():
        if z.prefix.startswith(prefix) or prefix.startswith(z.prefix):
            objects.extend(_zarr_keys(store, z.zarr_id, prefix, after))
    objects.sort()
    yield from objects


def list_objects_v2(store: Store, params: dict[str, str]) -> bytes:
    """The ListBucketResult XML for one ListObjectsV2 request."""
    prefix = params.get("prefix", "")
    delimiter = params.get("delimiter", "")
    try:
        max_keys = max(0, min(MAX_KEYS, int(params.get("max-keys", MAX_KEYS))))
    except ValueError:
        max_keys = MAX_KEYS
    token = params.get("continuation-token")
    after = params.get("start-after", "")
    if token:
        after = base64.urlsafe_b64decode(token.encode()).decode()
    contents: list[tuple[str, str, int, str]] = []
    prefixes: list[str] = []
    truncated = False
    last = ""
    for key, etag, size, stamp in _all_keys(store, prefix, after):
        if not key.startswith(prefix):
            break
        if key <= after:
            continue
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                common = key[:cut + len(delimiter)]
                if prefixes and prefixes[-1] == common:
                    continue
                if common <= after:
                    continue
                if len(contents) + len(prefixes) >= max_keys:
                    truncated = True
                    break
                prefixes.append(common)
                last = common + "\U0010ffff"  # skip the rest of this prefix next time
                continue
        if len(contents) + len(prefixes) >= max_keys:
            truncated = True
            break
        contents.append((key, etag, size, stamp))
        last = key
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
        "<Name>dandiarchive</Name>",
        f"<Prefix>{escape(prefix)}</Prefix>",
        f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>",
        f"<MaxKeys>{max_keys}</MaxKeys>",
    ]
    if delimiter:
        parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
    parts.append(f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>")
    if token:
        parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
    if truncated:
        nxt = base64.urlsafe_b64encode(last.encode()).decode()
        parts.append(f"<NextContinuationToken>{nxt}</NextContinuationToken>")
    if params.get("start-after"):
        parts.append(f"<StartAfter>{escape(params['start-after'])}</StartAfter>")
    for key, etag, size, stamp in contents:
        parts.append(f"<Contents><Key>{escape(key)}</Key><LastModified>{stamp}</LastModified>"
                     f"<ETag>&quot;{etag}&quot;</ETag><Size>{size}</Size>"
                     "<StorageClass>STANDARD</StorageClass></Contents>")
    for p in prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>")
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()
