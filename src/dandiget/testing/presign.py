"""Presigned object URLs in the shape of S3 SigV4 query auth (``X-Amz-*``), HMAC-checked.

The signature covers the HTTP method, the object key, every other query parameter (sorted)
and the expiry, so a client that edits the URL, uses it after it expired, or sends a HEAD to a
URL signed for GET (what the Archive's download redirects are) is refused like S3 refuses it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlencode

EXPIRES = 21600  # 6 h, what the Archive uses
SIGNATURE = "X-Amz-Signature"


class Signer:
    """Makes and checks presigned URLs for one archive (one secret)."""

    def __init__(self, secret: bytes | None = None, expires: int = EXPIRES):
        self.secret = secret or secrets.token_bytes(32)
        self.expires = expires
        #: False accepts a URL with either GET or HEAD, as moto (the golden captures' bucket)
        #: does; real S3 checks the method, and so does this archive by default.
        self.check_method = True

    def _signature(self, method: str, key: str, params: Iterable[tuple[str, str]]) -> str:
        canon = "&".join(f"{k}={v}" for k, v in sorted(params) if k != SIGNATURE)
        msg = f"{method}\n/{key}\n{canon}".encode()
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def sign(self, base: str, key: str, extra: Sequence[tuple[str, str]] = (), *,
             expired: bool = False, now: datetime | None = None, method: str = "GET") -> str:
        """A presigned ``method`` URL for ``key`` under ``base`` (already expired if asked)."""
        t = now or datetime.now(timezone.utc)
        if expired:
            t -= timedelta(seconds=self.expires + 60)
        params = [
            *extra,
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            ("X-Amz-Credential", f"dandigetTestKey/{t:%Y%m%d}/us-east-1/s3/aws4_request"),
            ("X-Amz-Date", t.strftime("%Y%m%dT%H%M%SZ")),
            ("X-Amz-Expires", str(self.expires)),
            ("X-Amz-SignedHeaders", "host"),
        ]
        params.append((SIGNATURE, self._signature(method, key, params)))
        query = urlencode(params, quote_via=quote, safe="")
        return f"{base}/{quote(key, safe='/')}?{query}"

    def check(self, key: str, params: Sequence[tuple[str, str]],
              now: datetime | None = None, method: str = "GET") -> tuple[str, dict[str, str]]:
        """``("none"|"ok"|"expired"|"bad", details)`` for a request's decoded query.

        "bad" also when ``method`` is not the one signed (HEAD to a GET URL: S3's 403).
        """
        d = dict(params)
        if SIGNATURE not in d and "X-Amz-Algorithm" not in d:
            return "none", {}
        sig = d.get(SIGNATURE, "")
        methods = (method,) if self.check_method else ("GET", "HEAD")
        if not any(hmac.compare_digest(sig, self._signature(m, key, params)) for m in methods):
            return "bad", {}
        try:
            start = datetime.strptime(d["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=timezone.utc)
            expires = int(d["X-Amz-Expires"])
        except (KeyError, ValueError):
            return "bad", {}
        end = start + timedelta(seconds=expires)
        t = now or datetime.now(timezone.utc)
        if t > end:
            return "expired", {
                "X-Amz-Expires": str(expires),
                "Expires": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ServerTime": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        return "ok", {}
