"""A pseudo-terminal pair made by ``socat``: a serial line on one machine, for Modbus RTU.

``PtyPair(link)`` starts ``socat pty,link=LINK pty,link=LINK.sim``: the agent opens ``link``
(the port a site file names) and the simulator serves ``other``. Bytes written at one end
come out at the other, as on an RS-485 line with one master and several slaves.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path


class PtyPair:
    def __init__(self, link: Path, other: Path | None = None) -> None:
        self.link = Path(link)
        self.other = Path(other) if other else self.link.with_name(self.link.name + ".sim")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> PtyPair:
        exe = shutil.which("socat")
        if exe is None:
            raise RuntimeError("socat is not installed (Debian package: socat); it makes the serial pty pair")
        self.link.parent.mkdir(parents=True, exist_ok=True)
        for p in (self.link, self.other):
            if p.is_symlink():
                p.unlink()  # a stale link from a killed run
        # ignoreeof: the agent may close and reopen its end (a restart) without ending the line.
        ends = [f"pty,raw,echo=0,ignoreeof,link={p}" for p in (self.link, self.other)]
        self.proc = subprocess.Popen([exe, *ends], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not (self.link.exists() and self.other.exists()):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"socat exited with code {self.proc.returncode}: {err.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"socat did not create {self.link} within {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> PtyPair:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
