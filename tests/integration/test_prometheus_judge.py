"""Prometheus for real: Debian's ``prometheus`` scrapes two versions of the tiny service; the judge reads PromQL.

Needs the ``prometheus`` binary on PATH (``apt-get install -y prometheus`` in ``.ci/run``); the test starts its own
server on a free port with a temporary TSDB and never uses the package's system service. Missing binary = failure,
never a silent skip (the integration marker's rule).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from pilotage.errors import BackendCorrupt
from pilotage.observe.judge import JudgeConfig, Outcome
from pilotage.observe.prometheus import PromQLSource
from pilotage.observe.samples import NoData, Sample
from pilotage.observe.slo import default_slo
from pilotage.rollout.analysis import assess
from pilotage.runtime.base import Instance, Workload
from pilotage.runtime.local import LocalRuntime
from tests.fixtures.tiny_service.harness import copy_service

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    assert found, "prometheus binary not on PATH: apt-get install -y prometheus (see .ci/run)"
    return found


def start_prometheus(binary: str, tmp_path: Path, versions: dict[str, Instance]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    targets = "\n".join(
        f"      - targets: ['127.0.0.1:{inst.port}']\n        labels: {{version: '{v}'}}"
        for v, inst in versions.items()
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: tiny\n    static_configs:\n{targets}\n",
        encoding="utf-8",
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603
        [
            binary,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    return proc, f"prometheus://127.0.0.1:{port}"


async def wait_ready(base: str, proc: subprocess.Popen[bytes], tmp_path: Path) -> None:
    async with httpx.AsyncClient(timeout=1.0) as client:
        for _ in range(300):
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]
            try:
                if (await client.get(base + "/-/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("Prometheus never became ready")


def test_judge_through_promql_fails_the_faulty_canary(prometheus_binary: str, tmp_path: Path) -> None:
    asyncio.run(scenario(prometheus_binary, tmp_path))


async def scenario(binary: str, tmp_path: Path) -> None:
    runtime = LocalRuntime(log_dir=tmp_path / "logs")
    versions: dict[str, Instance] = {}
    proc = None
    try:
        for version, rate in (("v1", "0"), ("v2", "0.3")):
            env = {"PILOTAGE_FAULT_ERROR_RATE": rate, "PILOTAGE_DB_PATH": str(tmp_path / f"{version}.db")}
            versions[version] = await runtime.start(
                Workload("tiny", version, copy_service(tmp_path / version), env=env)
            )
        proc, url = start_prometheus(binary, tmp_path, versions)
        await wait_ready(url.replace("prometheus://", "http://"), proc, tmp_path)
        await drive(url, versions)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        await runtime.close()


async def drive(prometheus: str, versions: dict[str, Instance]) -> None:
    source = PromQLSource(prometheus)
    stop = asyncio.Event()

    async def traffic() -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while not stop.is_set():
                for inst in versions.values():
                    await client.get(inst.url + "/notes")
                await asyncio.sleep(0.02)

    sender = asyncio.create_task(traffic())
    series: dict[str, list[Sample]] = {"v1": [], "v2": []}
    try:
        for _ in range(120):  # wait (no timing assertion) until Prometheus holds at least 8 distinct scrapes each
            for version in series:
                try:
                    sample = await source.sample(version, "")
                except NoData:
                    continue
                if not series[version] or sample.statuses != series[version][-1].statuses:
                    series[version].append(sample)
            if min(len(s) for s in series.values()) >= 8:
                break
            await asyncio.sleep(0.5)
        assert min(len(s) for s in series.values()) >= 8, "Prometheus never scraped the versions"
        found = assess(default_slo("tiny"), series["v2"], series["v1"], time_scale=1 / 720, min_requests=20)
        errors = next(v for v in found.verdicts if v.metric == "error_rate")
        assert errors.outcome is Outcome.FAIL
        assert errors.test.startswith("sequential")
        # always-valid p = 1/E: a Fail needs E >= 1 / (the error test's share of the step's alpha), so p is at most
        # alpha (~30 requests a version on a loaded machine reach p ≈ 0.003; hundreds reach 1e-6)
        assert errors.p_value is not None and errors.p_value <= JudgeConfig().alpha
        assert found.outcome is Outcome.FAIL
        aa = assess(default_slo("tiny"), series["v1"], series["v1"], time_scale=1 / 720, min_requests=20)
        same = next(v for v in aa.verdicts if v.metric == "error_rate")
        # A/A: never a false alarm; a Pass also needs enough clean requests (the confidence sequence under the
        # tolerance), which ~120 requests of this short run may not reach, so Inconclusive is the honest answer too.
        assert same.outcome in (Outcome.PASS, Outcome.INCONCLUSIVE), same.reason
        assert same.evidence["canary"][0] == 0

        with pytest.raises(BackendCorrupt, match="PromQL query failed"):
            await source.query("sum(http_requests_total{")
        with pytest.raises(NoData, match="empty result"):
            await source.sample("v9-not-deployed", "")
        # populations: label matchers added to the selector; Prometheus parses the escaped string literal
        route = await source.sample("v2", "", {"route": "/notes"})
        assert set(route.statuses) == {"200", "500"} and route.latency_count > 0
        with pytest.raises(NoData, match="empty result"):
            await source.sample("v2", "", {"route": 'no"such\\route\n'})
    finally:
        stop.set()
        await sender
        await source.aclose()
