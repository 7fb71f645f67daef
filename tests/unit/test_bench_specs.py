"""``benchmarks/bench_specs.py`` (issue 18): the baseline's schemathesis figures beside the change's."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from pilotage.events import EventType, new_event
from pilotage.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_specs import baseline_counts, keep_root, main, settle, table  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_the_baseline_gets_the_changes_figures_from_a_scratch_instance_or_an_error(tmp_path: Path) -> None:
    base_dir = Path(shutil.copytree(FIXTURES / "ok_service", tmp_path / "base"))
    events = [
        new_event(EventType.FLOW_STARTED, {"service": "pets"}, source="test"),
        new_event(EventType.SPEC_VALIDATED, {"base_spec_path": str(base_dir / "openapi.yaml")}, source="test"),
        new_event(EventType.CODE_GENERATED, {"commit": "c" * 40, "base_dir": str(base_dir)}, source="test"),
    ]
    settings = Settings(schemathesis_max_examples=2)
    counts = baseline_counts(events, tmp_path / "out", settings)
    assert set(counts) == {"requests", "server_errors", "contract_findings", "checks", "other_checks", "document_gaps"}
    assert counts["requests"] > 0 and counts["server_errors"] == 0 and counts["contract_findings"] == 0
    assert (tmp_path / "out" / "schemathesis.ndjson").is_file()
    assert baseline_counts(events[:2], tmp_path / "none", settings) == {
        "error": "the run left no baseline (code.generated base_dir, spec.validated base_spec_path)"
    }
    (tmp_path / "empty").mkdir()
    events[2] = new_event(EventType.CODE_GENERATED, {"commit": "c" * 40, "base_dir": str(tmp_path / "empty")},
                          source="test")  # fmt: skip
    broken = baseline_counts(events, tmp_path / "broken", settings.model_copy(update={"service_ready_timeout_s": 5.0}))
    assert set(broken) == {"error"} and broken["error"].startswith("the baseline could not be tested: ")


def test_the_table_shows_baseline_and_change_side_by_side() -> None:
    change = {"requests": 120, "server_errors": 0, "contract_findings": 1, "checks": ["status_code_conformance"],
              "other_checks": [], "document_gaps": ["404 GET /x/{id}"]}  # fmt: skip
    row = {"document": "d.yaml", "outcome": "promoted", "seconds": 61.2,
           "operations": {"state": 4, "not_implemented": 1}}  # fmt: skip
    rows = [
        {**row, "baseline": {**change, "requests": 90, "server_errors": 2, "contract_findings": 0, "checks": []},
         "change": change},
        {**row, "baseline": {"error": "the baseline could not be tested: no"}, "change": change},
    ]  # fmt: skip
    lines = table(rows).splitlines()
    assert lines[0].startswith("| document | outcome | s | ops state / 501 | schemathesis requests base / change |")
    assert lines[2] == "| d.yaml | promoted | 61.2 | 4 / 1 | 90 / 120 | 2 / 0 | 0 / 1 status_code_conformance | 1 / 1 |"
    assert lines[3] == (
        "| d.yaml | promoted | 61.2 | 4 / 1 | error / 120 | error / 0 | error / 1 status_code_conformance | error / 1 |"
    )


def test_keep_keeps_the_run_folders_that_missed_a_target_and_names_them(tmp_path: Path) -> None:
    root = keep_root(tmp_path / "kept" / "deeper")
    assert root.parent == tmp_path / "kept" / "deeper" and root.name.startswith("bench-specs-") and root.is_dir()
    assert keep_root(tmp_path / "kept" / "deeper") != root  # each invocation its own folder: nothing overwritten
    promoted = {"outcome": "promoted", "change": {"server_errors": 0, "contract_findings": 0}}
    for row, keep_all, kept in [
        (promoted, False, False),
        (promoted, True, True),
        ({**promoted, "outcome": "rolled_back"}, False, True),
        ({**promoted, "change": {"server_errors": 0, "contract_findings": 1}}, False, True),
        ({"outcome": "failed", "change": None}, False, True),
    ]:
        work = root / "doc"
        (work / "state").mkdir(parents=True, exist_ok=True)
        settled = settle(row, work, keep_all)
        assert settled == {**row, "kept": str(work) if kept else None}
        assert work.is_dir() == kept


def test_keep_arguments_are_checked_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "d.yaml").write_text("openapi: 3.0.3\n")
    with pytest.raises(SystemExit) as exited:
        main(["--specs", str(tmp_path / "specs"), "--keep-all"])
    assert exited.value.code == 2 and "--keep-all needs --keep DIR" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["--specs", str(tmp_path / "specs"), "--keep", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.startswith(f"error: --keep {tmp_path / 'file'}: ")
