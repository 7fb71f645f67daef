"""pytest runner: outcome counts from the JUnit XML, isolation from a parent's config, timeouts, broken runs."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from pilotage.errors import BackendCorrupt, InputError
from pilotage.testing.pytest_runner import UnitResult, has_pytest_config, parse_junit, run_pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

MIXED = """
import pytest

@pytest.fixture()
def broken():
    raise RuntimeError("fixture exploded")

def test_one():
    assert 1 + 1 == 2

def test_two():
    assert "a".upper() == "A"

def test_fails():
    assert 2 + 2 == 5

def test_errors(broken):
    pass

@pytest.mark.skip(reason="not today")
def test_skipped():
    pass
"""


def _service(root: Path, test_source: str) -> Path:
    (root / "tests").mkdir(parents=True)
    (root / "tests" / "test_mixed.py").write_text(test_source)
    return root


def _run(service: Path, junit: Path, timeout_s: float = 300.0) -> UnitResult:
    return asyncio.run(run_pytest(service, junit, timeout_s=timeout_s))


def test_counts_pass_fail_error_skip_and_ignores_a_parent_config(tmp_path: Path) -> None:
    # a parent config that would break the run (usage error) if pytest climbed to it
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option-anywhere\n")
    service = _service(tmp_path / "svc", MIXED)
    result = _run(service, tmp_path / "out" / "unit.xml")
    assert (result.passed, result.failed, result.errors, result.skipped) == (2, 1, 1, 1)
    assert result.exit_code == 1 and not result.timed_out and not result.ok
    assert result.junit_path.is_file() and result.log_path.is_file()
    assert not (service / ".pytest_cache").exists()
    assert not list(service.rglob("__pycache__"))
    assert result.to_dict()["failed"] == 1


def test_all_passing_suite_is_ok(tmp_path: Path) -> None:
    service = _service(tmp_path / "svc", "def test_a():\n    assert True\n")
    result = _run(service, tmp_path / "unit.xml")
    assert (result.passed, result.failed, result.errors, result.exit_code) == (1, 0, 0, 0) and result.ok


def test_the_buggy_fixture_service_has_one_failing_test(tmp_path: Path) -> None:
    service = shutil.copytree(FIXTURES / "buggy_service", tmp_path / "buggy")
    result = _run(service, tmp_path / "unit.xml", timeout_s=120)
    assert (result.passed, result.failed, result.errors) == (2, 1, 0)


def test_timeout_kills_the_suite_and_counts_an_error(tmp_path: Path) -> None:
    service = _service(tmp_path / "svc", "import time\n\ndef test_slow():\n    time.sleep(60)\n")
    started = time.monotonic()
    result = _run(service, tmp_path / "unit.xml", timeout_s=2.0)
    assert result.timed_out and result.errors == 1 and not result.ok
    assert time.monotonic() - started < 15


def test_collection_error_is_counted(tmp_path: Path) -> None:
    service = _service(tmp_path / "svc", "import no_such_module_here\n\ndef test_a():\n    pass\n")
    result = _run(service, tmp_path / "unit.xml")
    assert result.errors >= 1 and result.passed == 0 and result.exit_code == 2


def test_no_tests_folder_gives_zero_counts(tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    result = _run(tmp_path / "svc", tmp_path / "unit.xml")
    assert (result.passed, result.failed, result.errors, result.exit_code) == (0, 0, 0, 5) and result.ok


def test_missing_service_folder_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        _run(tmp_path / "nope", tmp_path / "unit.xml")


def test_parse_junit_sums_suites_and_rejects_garbage(tmp_path: Path) -> None:
    report = tmp_path / "r.xml"
    report.write_text(
        '<testsuites><testsuite tests="5" failures="1" errors="1" skipped="1"/>'
        '<testsuite tests="3" failures="0" errors="0" skipped="0"/></testsuites>'
    )
    assert parse_junit(report) == {"tests": 8, "failed": 1, "errors": 1, "skipped": 1, "passed": 5}
    report.write_text("<testsuites><testsuite")
    with pytest.raises(BackendCorrupt, match="r.xml"):
        parse_junit(report)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("pytest.ini", "[pytest]\n", True),
        ("pyproject.toml", "[tool.pytest.ini_options]\naddopts = '-q'\n", True),
        ("pyproject.toml", "[project]\nname = 'x'\n", False),
        ("setup.cfg", "[tool:pytest]\naddopts = -q\n", True),
        ("tox.ini", "[tox]\nenvlist = py311\n", False),
    ],
)
def test_has_pytest_config(tmp_path: Path, name: str, text: str, expected: bool) -> None:
    (tmp_path / name).write_text(text)
    assert has_pytest_config(tmp_path) is expected


def test_affected_first_order_is_stable_and_matches_parametrised_ids() -> None:
    from pilotage.testing.affected_first import order

    ids = ["t/a.py::x", "t/b.py::y[1]", "t/b.py::y[2]", "t/c.py::z", "t/d.py::w"]
    assert order(ids, ["t/c.py::z", "t/b.py::y", "t/nope.py::q"]) == [3, 1, 2, 0, 4]
    assert order(ids, []) == [0, 1, 2, 3, 4]
