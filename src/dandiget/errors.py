"""One exception hierarchy for everything dandiget raises.

::

    DandigetError
    ├── UnknownURLError (ValueError)        a resource identifier we cannot map
    ├── NotFoundError (RuntimeError)        dandiset / version / asset missing on the server
    ├── FailedToConnectError (RuntimeError) redirect resolution or server lookup failed
    │   └── ConnectError (TransportError)   refused / unresolvable / unreachable host: fatal
    ├── RequestError                        one request gave no usable answer (requests.py)
    │   ├── TransportError                  no (complete) response; retried unless ConnectError
    │   │   ├── RequestTimeout               connect timed out, or the body stalled
    │   │   └── ResponseError               a response we cannot use (truncated, too long,
    │   │                                   wrong Content-Range, server ignored Range)
    │   └── HTTPError                       a status we do not (or no longer) retry
    │       └── AuthenticationError         401/403 that a key did not (or could not) fix
    ├── TransferError                       bytes could not be fetched (object changed, ...)
    ├── ChecksumError                       downloaded bytes do not match the server digest
    ├── UnsafePathError (ValueError)        a server path would land outside the output folder
    ├── LockedError                         another dandiget process holds the output folder
    └── DownloadFailed (RuntimeError)       the run finished with N errors (carries the report)

The builtin mix-ins keep ``except RuntimeError`` / ``except ValueError`` code written for
dandi-cli working unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .report import DownloadReport


class DandigetError(Exception):
    """Base class of every error dandiget raises on purpose."""


class UnknownURLError(DandigetError, ValueError):
    """The resource identifier matches none of the accepted patterns."""


class NotFoundError(DandigetError, RuntimeError):
    """A dandiset, version, asset or path does not exist (or is not visible to you)."""


class FailedToConnectError(DandigetError, RuntimeError):
    """A server could not be reached, even after retries."""


class RequestError(DandigetError):
    """One request produced no usable answer. ``url`` never carries a query string (presigned
    signatures are credentials); messages are one line and never contain a token."""

    #: Whether another attempt can help (the executor's single retry rule).
    retryable = False

    def __init__(self, message: str, *, url: str | None = None):
        super().__init__(message)
        self.url = url


class TransportError(RequestError):
    """No complete response: a reset, a timeout, a truncated or unusable body. Retried."""

    retryable = True


class RequestTimeout(TransportError):
    """Connecting timed out, or the response stopped sending bytes (a stall)."""


class ResponseError(TransportError):
    """A response whose body cannot be used at the offset we asked for; retried."""


class ConnectError(TransportError, FailedToConnectError):
    """The host refused the connection, could not be resolved or is unreachable.

    Not retried when the host never answered in this run: retrying cannot fix a typo or a
    server that is down, and the user deserves the reason now, not after a minute.
    """

    retryable = False

    def __init__(self, message: str, *, url: str | None = None, host: str = "",
                 cause: str = ""):
        super().__init__(message, url=url)
        self.host = host
        self.cause = cause


class HTTPError(RequestError):
    """An HTTP request failed with a status we do not (or no longer) retry."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None):
        super().__init__(message, url=url)
        self.status = status
        #: The server's ``Retry-After`` (seconds), when it sent one: "come back later".
        self.retry_after: float | None = None


class AuthenticationError(HTTPError):
    """The server wants credentials we do not have, or rejected the ones we sent."""


class TransferError(DandigetError):
    """Bytes could not be fetched after every allowed attempt."""


class ChecksumError(DandigetError):
    """Downloaded bytes do not match the digest the server published."""

    def __init__(self, algorithm: str, got: str, expected: str):
        super().__init__(f"{algorithm}: downloaded {got} != {expected}")
        self.algorithm = algorithm
        self.got = got
        self.expected = expected


class UnsafePathError(DandigetError, ValueError):
    """A server-provided path or key would escape the output folder."""


class LockedError(DandigetError):
    """Another dandiget process is writing into the same output folder."""


class DownloadFailed(DandigetError, RuntimeError):
    """Raised at the end of a run that had per-file errors; carries the full report."""

    def __init__(self, message: str, report: DownloadReport | None = None, **extra: Any):
        super().__init__(message)
        self.report = report
        self.extra = extra
