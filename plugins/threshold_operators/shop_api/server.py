"""Running the shop API: in a background thread for tests, in the foreground for the CLI.

Both bind the socket before uvicorn starts, so port 0 (any free port) works and ``url`` is
known at once. Logging is quiet by default: warnings only, no access log.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime

from threshold_operators.shop_api.faults import FaultPolicy

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_server(app, log_level: str, access_log: bool):
    import uvicorn

    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="on")
    return uvicorn.Server(config)


class ShopApiServer:
    """The shop API on loopback, in a background thread.

    >>> with ShopApiServer("/tmp/shop.duckdb") as api:
    ...     requests.get(api.url + "/v1/orders")

    :param port: 0 picks a free port; ``url`` tells which.
    The other parameters are those of ``create_app``.
    """

    def __init__(
        self,
        source_path: str,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        faults: FaultPolicy | None = None,
        token: str | None = None,
        as_of: datetime | None = None,
        clock=None,
        log_level: str = "warning",
        startup_timeout: float = 15.0,
    ):
        self.source_path = str(source_path)
        self.host = host
        self.port = port
        self.faults = faults
        self.token = token
        self.as_of = as_of
        self.clock = clock
        self.log_level = log_level
        self.startup_timeout = startup_timeout
        self._server = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None
        self.url: str | None = None

    def start(self) -> ShopApiServer:
        """Start serving; returns once ``/healthz`` answers."""
        if self._thread is not None:
            raise RuntimeError("the shop API server is already running")
        from threshold_operators.shop_api.app import create_app

        app = create_app(self.source_path, faults=self.faults, token=self.token, as_of=self.as_of, clock=self.clock)
        self._sock = _bind(self.host, self.port)
        self.url = _url(self._sock)
        self._server = _uvicorn_server(app, self.log_level, access_log=False)
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"shop-api {self.url}", daemon=True)
        self._thread.start()
        self._wait_healthy()
        return self

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # reported by start()
            self._error = exc

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if not self._thread.is_alive():
                error = self._error
                self.stop()
                raise RuntimeError(f"the shop API server stopped while starting: {error!r}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the shop API server did not answer {self.url}/healthz within {self.startup_timeout} s"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and close the data file; safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> ShopApiServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def serve(
    source_path: str,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    faults: FaultPolicy | None = None,
    token: str | None = None,
    as_of: datetime | None = None,
    log_level: str = "warning",
) -> None:
    """Serve the shop API in the foreground until interrupted (``storefence shop-api``)."""
    from threshold_operators.shop_api.app import create_app

    app = create_app(source_path, faults=faults, token=token, as_of=as_of)
    sock = _bind(host, port)
    print(
        f"storefence shop-api: serving {source_path} on {_url(sock)} (Ctrl+C to stop)",
        file=sys.stderr,
        flush=True,
    )
    try:
        _uvicorn_server(app, log_level, access_log=log_level in ("debug", "trace")).run(sockets=[sock])
    finally:
        sock.close()
