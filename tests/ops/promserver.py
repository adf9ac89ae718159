"""A real Prometheus server on a loopback port for the operations tests, configured from the
shipped deploy/prometheus/prometheus.yml with the test's targets and short intervals."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from carbonwatch.embedded import free_port, wait_port

from support import REPO, wait_until

DEPLOY_PROM = REPO / "deploy" / "prometheus"


def prometheus_exe() -> str:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("prometheus is not installed (Debian package prometheus); .ci/run installs it")
    return exe


def render_config(
    tmp: Path, targets: dict[str, list[tuple[str, dict[str, str]]]], rule_files: list[Path], interval: str = "1s"
) -> Path:
    """The shipped configuration with the given file_sd targets per job, ``interval`` for scrapes
    and rule evaluation, the given rule files, and no Alertmanager."""
    config = yaml.safe_load((DEPLOY_PROM / "prometheus.yml").read_text("utf-8"))
    config["global"].update(scrape_interval=interval, evaluation_interval=interval)
    config["rule_files"] = [str(p) for p in rule_files]
    config.pop("alerting", None)
    jobs = []
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name not in targets:
            continue
        job.pop("scrape_interval", None)
        job["scrape_timeout"] = "900ms"
        sd = tmp / f"{name}-targets.yml"
        sd.write_text(yaml.safe_dump([{"targets": [t], "labels": labels} for t, labels in targets[name]]))
        job["file_sd_configs"] = [{"files": [str(sd)], "refresh_interval": "1s"}]
        jobs.append(job)
    config["scrape_configs"] = jobs
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class PrometheusServer:
    """``prometheus`` on 127.0.0.1:<free port> with its data in ``tmp``; stopped on exit."""

    def __init__(self, config: Path, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "prometheus.log"
        self.args = [
            prometheus_exe(),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> PrometheusServer:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port("127.0.0.1", self.port, 30, self.proc)
            wait_until(lambda: self._ready(), 30, what="prometheus /-/ready")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, path: str, **params) -> dict:
        r = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        return self.api("query", query=promql)["result"]

    def targets_up(self, job: str) -> list[dict]:
        return [t for t in self.api("targets")["activeTargets"] if t["labels"]["job"] == job and t["health"] == "up"]

    def alerts(self, name: str) -> list[dict]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
