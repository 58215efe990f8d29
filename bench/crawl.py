"""The ``slow-connection`` scenario's content host: one connection in sixteen crawls.

A tail-latency test (issue 13): on a real content host one TCP connection out of many is
sometimes far slower than its siblings (a bad path, a busy disk, a throttled flow). Here
nginx throttles every connection whose serial number is a multiple of ``CRAWL_EVERY``
to ``CRAWL_RATE``; every other connection is unlimited (the loopback profile). The rule
is the same for every tool and knows nothing about Range offsets or tools.

nginx's ``$connection`` is the connection's serial number (a counter shared by all
workers, from 1 at start). ``limit_rate`` takes a variable (nginx >= 1.17.0), so a
``map`` from the serial number to a rate throttles exactly the chosen connections, for
every request they carry (keep-alive included). Divisibility by 16 is decided by the
last four decimal digits (16 divides 10,000), so a finite map of those holds for any
serial number. The harness restarts nginx (same port) before every run of the
scenario, so the counter restarts and every run meets the crawl on the same connection
of its own: the readiness probe of :func:`servers.wait_port` takes serial 1, the tool's
first connection is serial 2, and its 15th, 31st, ... connections crawl.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from servers import LOCATIONS_LOOPBACK, REGISTRY, Nginx, start_nginx

#: Every connection whose serial number is a multiple of this one crawls.
CRAWL_EVERY = 16
#: How fast a crawling connection sends (nginx syntax; ``k`` is KiB): 256 KiB/s, so a
#: 64 MiB part on it takes ~4.3 min, while the whole 2 GiB file takes seconds otherwise.
CRAWL_RATE = "256k"


def serial_tails(every: int = CRAWL_EVERY) -> list[str]:
    """The last four digits (or fewer, of a shorter number) of the multiples of ``every``."""
    if every <= 0 or 10_000 % every:
        raise ValueError(f"{every} must divide 10,000 (decided by the last 4 digits)")
    tails = [str(k) for k in range(every, 10_000, every)]
    tails += [f"{k:04d}" for k in range(0, 10_000, every)]
    return list(dict.fromkeys(tails))  # 1008 is both a number and a tail


#: One line per request in ``<nginx prefix>/access.log``: the evidence of who crawled.
ACCESS_LOG = "access.log"


def locations() -> str:
    """The ``server`` body: the static files, at ``$crawl_rate`` (set by :func:`http_extra`),
    every request logged with its connection's serial number, Range, rate and duration."""
    return LOCATIONS_LOOPBACK.replace(
        "try_files $uri =404;", f"limit_rate $crawl_rate;\n            access_log {ACCESS_LOG} "
        "crawl;\n            try_files $uri =404;")


def http_extra(rate: str = CRAWL_RATE, every: int = CRAWL_EVERY) -> str:
    """Two ``map``s (http level): ``$connection`` to its last four digits, those to a rate.

    (One regex over the whole number would exceed nginx's 4 KiB limit on a parameter.)
    """
    keys = "".join(f"        {t} {rate};\n" for t in serial_tails(every))
    return ("    log_format crawl 'connection=$connection range=\"$http_range\" status=$status '\n"
            "        'sent=$body_bytes_sent rate=$crawl_rate seconds=$request_time "
            "complete=$request_completion';\n"
            "    map_hash_max_size 8192;\n"
            '    map $connection $crawl_tail {\n        "~([0-9]{1,4})$" $1;\n    }\n'
            f"    map $crawl_tail $crawl_rate {{\n{keys}        default 0;\n    }}\n")


def start_crawl_nginx(root: Path, port: int | None = None, rate: str = CRAWL_RATE,
                      every: int = CRAWL_EVERY) -> Nginx:
    """nginx over ``root`` where one connection in ``every`` crawls at ``rate``."""
    return start_nginx(root, "loopback", port=port, locations=locations(),
                       http_extra=http_extra(rate, every))


def restart(old: Nginx, root: Path, crawl: bool) -> Nginx:
    """``old`` stopped, and nginx again on its port: with the crawl rule and a fresh
    connection counter (``crawl``), or as ``old``'s profile has it."""
    REGISTRY.stop(old.proc)
    shutil.rmtree(old.tmp, ignore_errors=True)
    return (start_crawl_nginx(root, port=old.port) if crawl else
            start_nginx(root, old.profile, port=old.port))
