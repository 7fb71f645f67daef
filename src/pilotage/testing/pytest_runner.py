"""Run a service's own ``tests/`` with pytest in a subprocess and count the outcomes from its JUnit XML.

The command is ``sys.executable -m pytest -q tests --junitxml=FILE -p no:cacheprovider`` with the service folder as
working directory (so ``app`` imports as in production, per the generated-service conventions of
``docs/events-contract.md``), in a bounded child process (:mod:`pilotage.testing.process`). Counts come from the
JUnit XML, not the console: ``passed = tests - failures - errors - skipped`` summed over every ``<testsuite>``
(pytest's JUnit writer, ``_pytest/junitxml.py``).

Isolation: a service folder usually sits inside a larger checkout (a git worktree, a repository's fixtures). When
the folder has no pytest configuration of its own (``pytest.ini``, ``pyproject.toml`` with
``[tool.pytest.ini_options]``, ``tox.ini`` or ``setup.cfg`` with a pytest section), pytest would climb to a
parent's configuration; the runner then passes an empty ini (``-c``) and ``--rootdir`` = the service folder, so
only the service's own settings apply.
``-p no:cacheprovider`` and ``PYTHONDONTWRITEBYTECODE=1`` keep ``.pytest_cache`` and ``__pycache__`` out of the
tree under test.

Exit codes (pytest's ``ExitCode``): 0 all passed, 1 some failed, 2 interrupted, 3 internal error, 4 usage error,
5 no tests collected. A run that ends with 2–4, or times out, without recording an error in the XML counts one
error, so a broken run never looks clean.
"""

from __future__ import annotations

import configparser
import json
import sys
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotage.errors import BackendCorrupt, InputError
from pilotage.testing.process import run_process

__all__ = ["UnitResult", "has_pytest_config", "parse_junit", "run_pytest"]

#: Time budget of a service's own test suite (seconds).
DEFAULT_TIMEOUT_S = 300.0
#: pytest exit codes that mean the run itself broke (interrupted, internal error, usage error).
_BROKEN_EXIT_CODES = {2, 3, 4}
#: pytest exit code: no tests were collected.
NO_TESTS_COLLECTED = 5


@dataclass(frozen=True)
class UnitResult:
    """Outcome of a service's own tests.

    Attributes:
        passed: tests that passed.
        failed: tests that failed (assertion or exception in the test body).
        errors: tests that errored (fixture / collection errors), plus 1 when the run broke without an XML error.
        skipped: skipped tests (xfail included, as pytest's JUnit writer counts them).
        exit_code: pytest's exit status (5: no tests collected; negative: killed), None if unknown.
        timed_out: the time budget ran out and the run was killed.
        duration_s: wall-clock seconds of the run.
        junit_path: the JUnit XML pytest wrote.
        log_path: pytest's console output.
    """

    passed: int
    failed: int
    errors: int
    skipped: int
    exit_code: int | None
    timed_out: bool
    duration_s: float
    junit_path: Path
    log_path: Path

    @property
    def ok(self) -> bool:
        """True when nothing failed or errored (a suite without tests is ok: there is nothing to fail)."""
        return self.failed == 0 and self.errors == 0 and not self.timed_out

    def to_dict(self) -> dict[str, Any]:
        """Return the ``tests.completed`` ``unit`` shape plus run metadata (JSON-serialisable)."""
        return {
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "duration_s": round(self.duration_s, 3),
            "junit_path": str(self.junit_path),
        }


def parse_junit(path: Path) -> dict[str, int]:
    """Count test outcomes in a JUnit XML file.

    Args:
        path: a JUnit XML report (root ``<testsuites>`` or a single ``<testsuite>``).

    Returns:
        ``{"tests", "passed", "failed", "errors", "skipped"}`` (counts).

    Raises:
        BackendCorrupt: the file is not well-formed XML (names the file).
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise BackendCorrupt(f"JUnit XML {path} cannot be read: {exc}", hint="rerun the tests", path=path) from exc
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {"tests": 0, "failed": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        counts["tests"] += int(suite.get("tests", 0))
        counts["failed"] += int(suite.get("failures", 0))
        counts["errors"] += int(suite.get("errors", 0))
        counts["skipped"] += int(suite.get("skipped", 0))
    counts["passed"] = max(counts["tests"] - counts["failed"] - counts["errors"] - counts["skipped"], 0)
    return counts


def has_pytest_config(folder: Path) -> bool:
    """Return True when ``folder`` holds a pytest configuration file of its own (pytest's ``locate_config`` order)."""
    if (folder / "pytest.ini").is_file() or (folder / ".pytest.ini").is_file():
        return True
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file():
        try:
            doc = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            return False
        if "ini_options" in doc.get("tool", {}).get("pytest", {}):
            return True
    for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        cfg = folder / name
        if cfg.is_file():
            parser = configparser.ConfigParser(interpolation=None)
            try:
                parser.read(cfg, encoding="utf-8")
            except configparser.Error:
                continue
            if parser.has_section(section):
                return True
    return False


async def run_pytest(
    service_dir: Path,
    junit_path: Path,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    env: dict[str, str] | None = None,
    first: list[str] | None = None,
    extra_args: list[str] | None = None,
) -> UnitResult:
    """Run ``service_dir/tests`` with pytest and count the outcomes.

    Args:
        service_dir: the service folder (holds ``app/`` and ``tests/``).
        junit_path: where pytest writes its JUnit XML (the log goes next to it, ``.log`` suffix).
        timeout_s: time budget in seconds; on expiry the run is killed.
        env: variables the test process needs besides the allow-list of :mod:`pilotage.runtime.sandbox`.
        first: pytest node ids (relative to ``service_dir``) to run before the other tests (issue #4: the tests the
            knowledge graph says a change affects); every test still runs once
            (:mod:`pilotage.testing.affected_first`).
        extra_args: more pytest arguments (issue #5: ``--ignore``, ``--deselect`` of quarantined tests, node ids).

    Returns:
        The :class:`UnitResult`; a folder without ``tests/`` gives zero counts and exit code 5.

    Raises:
        InputError: ``service_dir`` is not a folder.
        BackendError: pytest cannot be started.
    """
    service_dir = Path(service_dir).resolve()
    if not service_dir.is_dir():
        raise InputError(f"service folder {service_dir} does not exist", hint="pass head_dir of code.generated")
    junit_path = Path(junit_path).resolve()
    junit_path.parent.mkdir(parents=True, exist_ok=True)
    junit_path.unlink(missing_ok=True)
    log_path = junit_path.with_suffix(".log")
    if not (service_dir / "tests").is_dir():
        log_path.write_text(f"{service_dir} has no tests/ folder: nothing to run\n")
        return UnitResult(0, 0, 0, 0, NO_TESTS_COLLECTED, False, 0.0, junit_path, log_path)
    targets = [a for a in extra_args or [] if not a.startswith("-") and "::" in a] or ["tests"]
    options = [a for a in extra_args or [] if a not in targets]
    argv = [sys.executable, "-m", "pytest", "-q", *targets, f"--junitxml={junit_path}", "-p", "no:cacheprovider"]
    argv += options
    if not has_pytest_config(service_dir):
        empty_ini = junit_path.with_suffix(".pytest.ini")
        empty_ini.write_text("[pytest]\n")
        argv += ["-c", str(empty_ini), "--rootdir", str(service_dir)]
    if first:  # issue #4: affected tests first
        from pilotage.testing.affected_first import ENV

        argv += ["-p", "pilotage.testing.affected_first"]
        env = {**(env or {}), ENV: json.dumps(first)}
    outcome = await run_process(
        argv, cwd=service_dir, timeout_s=timeout_s, log_path=log_path, env=env, mask_files=[junit_path]
    )
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    if junit_path.is_file():
        counts.update(parse_junit(junit_path))
    if (outcome.timed_out or outcome.exit_code in _BROKEN_EXIT_CODES or not junit_path.is_file()) and (
        counts["errors"] == 0 and outcome.exit_code != NO_TESTS_COLLECTED
    ):
        counts["errors"] = 1
    return UnitResult(
        passed=counts["passed"],
        failed=counts["failed"],
        errors=counts["errors"],
        skipped=counts["skipped"],
        exit_code=outcome.exit_code,
        timed_out=outcome.timed_out,
        duration_s=outcome.duration_s,
        junit_path=junit_path,
        log_path=log_path,
    )
