"""Simulated nodes on one machine: network namespaces, veth pairs and a bandwidth cap each.

Node ``i`` is the namespace ``dgsc<i>`` joined to the root namespace by a veth pair
(``dgsc<i>r`` in the root namespace, ``dgsc<i>n`` inside), on ``198.18.<i+1>.0/24`` (the
range RFC 2544 reserves for benchmarks; used here only between these namespaces):
``.1`` on the root side, ``.2`` inside. The servers (content host, API, Dask scheduler)
listen on :data:`SERVICE_ADDR`, the root side of node 0, which every node reaches through
its own veth. A node routes ``198.18.0.0/15`` to the root namespace and nothing else: it
has no default route, so no byte can leave the machine from it. The root namespace gets a
``blackhole`` route for ``198.18.0.0/15`` while the nodes exist, so that an address of a
node that is gone is dropped here instead of following the default route out.

The cap is a token bucket (``tc qdisc ... tbf``) on the egress of both ends: the root side
shapes what a node downloads, the inside end what it sends. Everything is made by
:meth:`Nodes.setup` and removed by :meth:`Nodes.teardown` (deleting a namespace deletes
its veth pair and qdiscs); a run that died without tearing down is cleaned up by the next
one (the owner's pid is recorded in :data:`OWNER`). Needs root and ``ip``/``tc``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "dgsc"
NET = "198.18.0.0/15"
SERVICE_ADDR = "198.18.1.1"
OWNER = Path("/run/dandiget-scaling.owner")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip() or p.returncode}")
    return p


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root (ip netns, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2)"
    return None


def node_addr(i: int) -> str:
    return f"198.18.{i + 1}.2"


def root_addr(i: int) -> str:
    return f"198.18.{i + 1}.1"


def our_namespaces() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines()
            if line.split() and line.split()[0].startswith(PREFIX)]


def clean_stale() -> None:
    """Remove what a previous run left behind, unless that run is still alive."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(OWNER.read_text().split()[0])
        if pid != os.getpid() and Path(f"/proc/{pid}").exists():
            raise RuntimeError(f"another scaling benchmark (pid {pid}) owns the {PREFIX}* "
                               "namespaces")
    for ns in our_namespaces():
        _ip("netns", "del", ns, check=False)
    out = _ip("-br", "link", "show", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0].split("@")[0] if line.split() else ""
        if name.startswith(PREFIX):
            _ip("link", "del", name, check=False)
    _ip("route", "del", "blackhole", NET, check=False)
    with contextlib.suppress(OSError):
        OWNER.unlink()


@dataclass
class Nodes:
    """``count`` namespaces, each capped at ``rate`` (tc syntax, e.g. ``200mbit``; None or
    ``""``: no cap)."""

    count: int
    rate: str | None = "200mbit"
    made: list[str] = field(default_factory=list)
    blackhole: bool = False

    def ns(self, i: int) -> str:
        return f"{PREFIX}{i}"

    def exec_prefix(self, i: int) -> list[str]:
        """Prefix a command with this to run it inside node ``i``."""
        return ["ip", "netns", "exec", self.ns(i)]

    def setup(self) -> Nodes:
        why = available()
        if why:
            raise RuntimeError(why)
        clean_stale()
        OWNER.write_text(f"{os.getpid()}\n")
        try:
            _ip("route", "add", "blackhole", NET)
            self.blackhole = True
            for i in range(self.count):
                self._add(i)
        except BaseException:
            self.teardown()
            raise
        return self

    def _add(self, i: int) -> None:
        ns, r, n = self.ns(i), f"{PREFIX}{i}r", f"{PREFIX}{i}n"
        _ip("netns", "add", ns)
        self.made.append(ns)
        _ip("link", "add", r, "type", "veth", "peer", "name", n, "netns", ns)
        _ip("addr", "add", f"{root_addr(i)}/24", "dev", r)
        _ip("link", "set", r, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "addr", "add", f"{node_addr(i)}/24", "dev", n)
        _ip("-n", ns, "link", "set", n, "up")
        _ip("-n", ns, "route", "add", NET, "via", root_addr(i))
        if self.rate:
            tbf = ["root", "tbf", "rate", self.rate, "burst", "256kb", "latency", "50ms"]
            _run(["tc", "qdisc", "add", "dev", r, *tbf])
            _run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", n, *tbf])

    def qdiscs(self) -> list[str]:
        """``tc qdisc show`` of both ends of every node (what the run recorded)."""
        lines = []
        for i in range(self.count):
            lines += [f"{PREFIX}{i}r: " + _run(["tc", "qdisc", "show", "dev", f"{PREFIX}{i}r"],
                                                check=False).stdout.strip(),
                      f"{PREFIX}{i}n: " + _run([*self.exec_prefix(i), "tc", "qdisc", "show",
                                                 "dev", f"{PREFIX}{i}n"],
                                                check=False).stdout.strip()]
        return lines

    def teardown(self) -> None:
        """Delete every namespace (with its veth pair and qdiscs), then the blackhole.

        Processes inside must be stopped first: a namespace with a process in it
        disappears from the list but lives on until that process exits."""
        for ns in reversed(self.made):
            # The root end first: deleting it deletes the pair now, the namespace's own
            # clean-up happens later in the kernel.
            _ip("link", "del", f"{ns}r", check=False)
            _ip("netns", "del", ns, check=False)
        self.made.clear()
        if self.blackhole:
            _ip("route", "del", "blackhole", NET, check=False)
            self.blackhole = False
        with contextlib.suppress(OSError):
            if OWNER.read_text().split()[0] == str(os.getpid()):
                OWNER.unlink()
