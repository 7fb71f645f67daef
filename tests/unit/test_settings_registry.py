from pathlib import Path

import pytest

from pilotage.errors import ConfigError, PilotageError
from pilotage.registry import backend_class
from pilotage.settings import Settings, load_settings


def test_defaults_toml_and_env_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "pilotage.toml"
    cfg.write_text("[pilotage]\nslo_error_rate = 0.01\ncanary_steps_percent = [50, 100]\n")
    monkeypatch.setenv("PILOTAGE_ANALYSIS_WINDOW_S", "1.5")
    s = load_settings(cfg)
    assert s.slo_error_rate == 0.01
    assert s.canary_steps_percent == [50, 100]
    assert s.analysis_window_s == 1.5
    assert s.idle_after_s == 7200.0


def test_bad_settings_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "pilotage.toml"
    cfg.write_text("slo_error_rate = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg)
    cfg.write_text("slo_error_rate = 3")
    with pytest.raises(ConfigError, match="slo_error_rate"):
        load_settings(cfg)
    cfg.write_text("no_such_option = 1")
    with pytest.raises(ConfigError, match="no_such_option"):
        load_settings(cfg)


def test_registry_resolves_and_lists_known_schemes() -> None:
    assert backend_class("bus", "sqlite:///x.db").__name__ == "SQLiteBus"
    assert backend_class("bus", "memory://").__name__ == "MemoryBus"
    with pytest.raises(ConfigError) as info:
        backend_class("bus", "carrier-pigeon://coop")
    assert "memory:" in str(info.value) and "sqlite:" in str(info.value)


def test_errors_are_one_line_with_fix() -> None:
    err = PilotageError("spec file x.yaml not found\n in folder", hint="pass --spec", path="x.yaml")
    assert str(err) == "spec file x.yaml not found in folder (fix: pass --spec)"
    assert err.path == "x.yaml"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("steps", "needle"),
    [("[]", "at least one step"), ("[10, 200]", "1..100"), ("[50, 10, 100]", "must increase"), ("[10, 50]", "100")],
)
def test_canary_steps_are_validated(tmp_path: Path, steps: str, needle: str) -> None:
    cfg = tmp_path / "pilotage.toml"
    cfg.write_text(f"canary_steps_percent = {steps}\n")
    with pytest.raises(ConfigError, match=needle):
        load_settings(cfg)


def test_the_embedded_log_and_graph_live_in_the_state_folder_unless_set(tmp_path: Path) -> None:
    # issue 18 (item 9): --workdir DIR / PILOTAGE_HOME put everything in DIR, the event log and graph included
    moved = Settings(home=tmp_path / "state")
    assert moved.bus_url == f"sqlite:///{tmp_path}/state/events.db"
    assert moved.graph_url == f"sqlite:///{tmp_path}/state/graph.db"
    assert Settings().bus_url == "sqlite:///.pilotage/events.db"  # the default folder, as before
    explicit = Settings(bus_url="nats://127.0.0.1:4222", canary_steps_percent=[20, 100]).with_home(tmp_path)
    assert explicit.bus_url == "nats://127.0.0.1:4222" and explicit.graph_url == f"sqlite:///{tmp_path}/graph.db"
    assert explicit.canary_steps_percent == [20, 100] and explicit.home == tmp_path
