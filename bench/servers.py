"""Processes the harness starts and must stop: nginx, the archive API, helpers.

Every child is registered in :data:`REGISTRY` and started with ``PR_SET_PDEATHSIG`` so it
dies with the harness even on SIGKILL; :func:`cleanup` stops whatever is still running
(each by its own process group id) and removes the temporary directories.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM are noted, not handled, inside; delivered on the way out.

    ``preexec_fn`` makes ``subprocess`` run the interpreter's at-fork hooks in this process
    around the fork, and logging's are Python functions (``_acquireLock`` before,
    ``_releaseLock`` after). A signal that comes during the fork has its Python handler run
    inside one of them, where an exception is only printed ("Exception ignored in:
    <function _releaseLock>") and dropped: the KeyboardInterrupt of a SIGTERM handler
    (scaling.py, run.py) or of Ctrl-C was lost, and logging's lock stayed held by this
    thread for good, so every other thread that logs (the IO loop of each later Dask client)
    blocked and the benchmark neither stopped nor got on. Here the signal is noted and
    raised again once the child has started and is registered, in ordinary code.
    """
    if (threading.current_thread() is not threading.main_thread()  # handlers run there only
            or any(signal.getsignal(s) is None for s in HELD_SIGNALS)):  # not set from Python
        yield
        return
    noted: list[int] = []
    old = {s: signal.signal(s, lambda signum, _frame: noted.append(signum))
           for s in HELD_SIGNALS}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for signum in dict.fromkeys(noted):
            signal.raise_signal(signum)  # the real handler runs now (or the default action)


@dataclass
class Registry:
    procs: list[subprocess.Popen] = field(default_factory=list)
    dirs: list[Path] = field(default_factory=list)

    def popen(self, cmd: list[str], **kw: Any) -> subprocess.Popen:
        kw.setdefault("start_new_session", True)
        with _signals_held():  # registered before an interrupt can escape, too
            p = subprocess.Popen(cmd, preexec_fn=_die_with_parent, **kw)
            self.procs.append(p)
        return p

    def tempdir(self, prefix: str, parent: Path | None = None) -> Path:
        d = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self.dirs.append(d)
        return d

    def stop(self, p: subprocess.Popen, timeout: float = 10) -> None:
        """Stop one child and its process group: SIGTERM, then SIGKILL."""
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        else:  # leader gone; kill stragglers of its group, if any
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if p in self.procs:
            self.procs.remove(p)

    def cleanup(self) -> None:
        for p in reversed(list(self.procs)):
            self.stop(p)
        for d in reversed(self.dirs):
            shutil.rmtree(d, ignore_errors=True)
        self.dirs.clear()


REGISTRY = Registry()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20,
              host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


# --------------------------------------------------------------------------- packages


def ensure_packages(binaries: dict[str, str], log: IO[str] = sys.stderr) -> dict[str, bool]:
    """``{binary or file: debian package}``: apt-get install what is missing (root only).

    Returns which of them are available afterwards; never raises.
    """
    def have(name: str) -> bool:
        return Path(name).exists() if name.startswith("/") else shutil.which(name) is not None

    missing = {b: pkg for b, pkg in binaries.items() if not have(b)}
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        pkgs = sorted(set(missing.values()))
        print(f"installing {' '.join(pkgs)} with apt-get ...", file=log, flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=300,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # One package at a time: one that cannot be had must not block the others.
            for pkg in pkgs:
                subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                                pkg], env=env, check=False, timeout=600,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"apt-get failed: {e}", file=log, flush=True)
    return {b: have(b) for b in binaries}


# --------------------------------------------------------------------------- nginx


def nginx_binary() -> str | None:
    for cand in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if cand and Path(cand).exists():
            return cand
    return None


NGINX_CONF = """\
{load_module}
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 65536;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
{user}
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{http_extra}    types {{ }}
    default_type application/octet-stream;
    etag on;
    server {{
        listen {host}:{port} reuseport backlog=4096;
        root {root};
{locations}
    }}
}}
"""

LOCATIONS_LOOPBACK = """\
        location / {
            try_files $uri =404;
        }
"""

# ~20 ms before the first byte of every response (echo_sleep, then an internal redirect to
# the static handler, which still honours Range), then at most 25 MB/s per connection.
LOCATIONS_S3LIKE = """\
        location / {
            echo_sleep 0.02;
            echo_exec @object;
        }
        location @object {
            limit_rate 25m;
            try_files $uri =404;
        }
"""

LOCATIONS_S3LIKE_NO_LATENCY = """\
        location / {
            limit_rate 25m;
            try_files $uri =404;
        }
"""


@dataclass
class Nginx:
    proc: subprocess.Popen
    port: int
    tmp: Path
    profile: str
    latency: bool
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def start_nginx(root: Path, profile: str, workers: int = 2, *, port: int | None = None,
                locations: str | None = None, http_extra: str = "",
                host: str = "127.0.0.1") -> Nginx:
    """nginx over ``root`` on a free port of ``host`` (loopback unless told), in the
    foreground, as a child.

    ``port``: this one instead (a restart on the same address); ``locations`` and
    ``http_extra``: a ``server`` body and ``http``-level lines instead of the profile's
    (the ``slow-connection`` scenario, ``crawl.py``).
    """
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed")
    tmp = REGISTRY.tempdir("dandiget-bench-nginx-")
    latency = profile == "s3like" and ECHO_MODULE.exists()
    if locations is None:
        locations = (LOCATIONS_LOOPBACK if profile == "loopback" else
                     LOCATIONS_S3LIKE if latency else LOCATIONS_S3LIKE_NO_LATENCY)
    port = port or free_port(host)
    conf = NGINX_CONF.format(http_extra=http_extra, host=host,
        load_module=f"load_module {ECHO_MODULE};" if latency else "",
        workers=workers, tmp=tmp, port=port, root=root, locations=locations,
        user="user root;" if os.geteuid() == 0 else "")
    (tmp / "nginx.conf").write_text(conf)
    log = open(tmp / "stderr.log", "wb")  # noqa: SIM115 - closed with the process
    proc = REGISTRY.popen([binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                           "-e", str(tmp / "error.log")],
                          stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()
    try:
        wait_port(port, proc, host=host)
    except RuntimeError as e:
        err = (tmp / "error.log").read_text(errors="replace")[-2000:] if (
            tmp / "error.log").exists() else ""
        REGISTRY.stop(proc)
        raise RuntimeError(f"nginx did not start: {e}\n{err}") from None
    return Nginx(proc, port, tmp, profile, latency, host)


# --------------------------------------------------------------------------- archive


@dataclass
class Archive:
    proc: subprocess.Popen
    info: dict

    @property
    def api_url(self) -> str:
        return str(self.info["api_url"])

    def dandiset_url(self, did: str) -> str:
        return f"{self.api_url}/dandisets/{did}/"


def archive_python() -> str:
    """An interpreter that can import dandiget.testing (this one, else the repo's .venv)."""
    try:
        import dandiget.testing  # noqa: F401
        return sys.executable
    except ImportError:
        venv = BENCH_DIR.parent / ".venv" / "bin" / "python"
        return str(venv) if venv.exists() else sys.executable


def start_archive(kind: str, cache: Path, content_base: str | None, log_path: Path,
                  api_cost: str = "none", timeout: float = 1800,
                  host: str = "127.0.0.1") -> Archive:
    """The archive launcher as a child; returns once it printed its URLs.

    ``api_cost="s3like"``: the API answers as slowly as the real one (``api_latency.py``).
    """
    cmd = [archive_python(), str(BENCH_DIR / "archive_server.py"), "--kind", kind,
           "--cache", str(cache), "--api-cost", api_cost, "--host", host]
    if content_base:
        cmd += ["--content-base", content_base]
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    proc = REGISTRY.popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
    log.close()
    assert proc.stdout is not None
    line = b""
    deadline = time.monotonic() + timeout
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            if time.monotonic() > deadline:
                REGISTRY.stop(proc)
                raise RuntimeError(f"archive launcher gave no URLs in {timeout} s")
            if sel.select(1.0):
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    REGISTRY.stop(proc)
                    raise RuntimeError(f"archive launcher exited ({proc.poll()}); see {log_path}")
                line += chunk
    return Archive(proc, json.loads(line.decode()))
