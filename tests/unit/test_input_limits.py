"""Resource exhaustion and bad values from input (issue #15, finding 8).

Document limits (size, YAML aliases and their expansion, depth, number length) in the one loader
(:mod:`pilotage.spec.load`), names that become path components (:mod:`pilotage.names`) and finite, bounded
numeric settings (:mod:`pilotage.settings`).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from pilotage.agent import RunSpec
from pilotage.errors import ConfigError, InputError
from pilotage.names import check_name, is_name, name_from
from pilotage.observe.slo import load_slo
from pilotage.settings import load_settings
from pilotage.spec.load import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_NUMBER_CHARS,
    load_spec,
    parse_document,
)
from tests.fixtures import CHECKOUT_SPEC

HEAD = 'openapi: 3.0.3\ninfo: {title: x, version: "1"}\npaths: {}\n'


def billion_laughs() -> str:
    """The classic alias bomb: 9 levels of 9 aliases, 9^9 (387 million) strings once expanded; < 2 KB."""
    lines = [HEAD.rstrip("\n"), 'x-a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"x-{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_an_alias_bomb_is_refused_in_under_two_seconds(tmp_path: Path) -> None:
    bomb = write(tmp_path, "bomb.yaml", billion_laughs())
    assert bomb.stat().st_size < 2000
    t0 = time.monotonic()
    with pytest.raises(InputError) as info:
        load_spec(bomb)
    assert time.monotonic() - t0 < 2.0
    assert "bomb.yaml" in str(info.value) and "aliases" in str(info.value) and "nodes" in str(info.value)


def test_many_aliases_and_recursive_aliases_are_refused(tmp_path: Path) -> None:
    many = HEAD + "x-a: &a 1\nx-list: [" + ", ".join(["*a"] * 1001) + "]\n"
    with pytest.raises(InputError, match="too many YAML aliases"):
        parse_document(many, path="many.yaml")
    with pytest.raises(InputError, match="recursive YAML alias"):
        parse_document(HEAD + "x-r: &r [*r]\n", path="rec.yaml")


def test_a_few_aliases_still_load() -> None:
    doc = parse_document(HEAD + "x-a: &a {type: string}\nx-b: [*a, *a]\n", path="ok.yaml")
    assert doc["x-b"] == [{"type": "string"}, {"type": "string"}]


@pytest.mark.parametrize("syntax", ["yaml", "json"])
def test_deep_nesting_is_refused_with_the_limit(syntax: str) -> None:
    text = '{"openapi": "3.0.3", "x-deep": ' + "[" * 20_000 + "]" * 20_000 + "}"
    with pytest.raises(InputError) as info:
        parse_document(text, path="deep.json", syntax=syntax)
    assert "deep.json nests too deep" in str(info.value) and f"{MAX_DEPTH} levels" in str(info.value)


def test_depth_through_aliases_is_counted_expanded() -> None:
    level = "[" * 60 + "1" + "]" * 60
    text = HEAD + f"x-a: &a {level}\nx-b: &b [{'[' * 45}*a{']' * 45}]\n"
    with pytest.raises(InputError, match="nests too deep through aliases"):
        parse_document(text, path="alias-deep.yaml")


@pytest.mark.parametrize("syntax", ["yaml", "json"])
def test_a_5000_digit_number_is_refused(syntax: str) -> None:
    text = '{"openapi": "3.0.3", "x-n": ' + "9" * 5000 + "}"
    with pytest.raises(InputError) as info:
        parse_document(text, path="long.json", syntax=syntax)
    assert "long.json holds a number too long" in str(info.value) and str(MAX_NUMBER_CHARS) in str(info.value)
    ok = parse_document('{"x-n": 9223372036854775807, "y": 1.7976931348623157e308}', syntax=syntax)
    assert ok["x-n"] == 2**63 - 1


def test_an_oversize_document_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w", encoding="utf-8") as out:
        out.write(HEAD + "x-pad: '")
        out.write("a" * (MAX_DOCUMENT_BYTES + 1))
        out.write("'\n")
    t0 = time.monotonic()
    with pytest.raises(InputError) as info:
        load_spec(big)
    assert time.monotonic() - t0 < 2.0
    assert "big.yaml is too large" in str(info.value) and f"{MAX_DOCUMENT_BYTES:,} bytes" in str(info.value)


def test_a_date_that_does_not_exist_is_input_error() -> None:
    with pytest.raises(InputError, match="bad-date.yaml holds a value YAML cannot represent"):
        parse_document(HEAD + "x-when: 2024-02-30\n", path="bad-date.yaml")


def test_the_slo_file_goes_through_the_same_limits(tmp_path: Path) -> None:
    slo = write(tmp_path, "slo.yaml", billion_laughs().replace(HEAD, "objectives: []\n"))
    with pytest.raises(InputError, match="SLO file .*slo.yaml expands its YAML aliases too far"):
        load_slo(slo)


def test_real_specs_still_load() -> None:
    assert load_spec(CHECKOUT_SPEC)["openapi"].startswith("3.")


@pytest.mark.parametrize("name", ["../..", "..", "a/b", "/etc", "-rf", ".hidden", "a..b", "", "x" * 64, "a b"])
def test_unsafe_names_are_refused(name: str) -> None:
    assert not is_name(name)
    with pytest.raises(InputError, match="--service"):
        check_name(name, "--service")


def test_safe_names_pass_and_derived_names_are_made_safe() -> None:
    for name in ("checkout", "petstore3", "Orders_v2.1", "run-0123456789ab", "x" * 63):
        assert check_name(name, "--service") == name
    assert name_from("my spec (v2)") == "my-spec-v2"
    assert name_from("..") == "service" and name_from("../../etc") == "etc"


def test_a_run_whose_service_or_id_is_a_path_is_refused() -> None:
    """A flow.started written by any process that can write the log goes through RunSpec (then agent.failed)."""
    fields = {"spec_path": "/x.yaml", "request": "Add x support", "workdir": "/tmp/w"}
    with pytest.raises(ValidationError, match="service"):
        RunSpec(run_id="run-1", service="../..", **fields)
    with pytest.raises(ValidationError, match="run_id"):
        RunSpec(run_id="../../etc", service="svc", **fields)


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("PILOTAGE_ROLLOUT_POLL_S", "inf", "rollout_poll_s"),
        ("PILOTAGE_ROLLOUT_POLL_S", "nan", "rollout_poll_s"),
        ("PILOTAGE_LOAD_TEST_USERS", "1e23", "load_test_users"),
        ("PILOTAGE_LOAD_TEST_USERS", "1000000000000000", "load_test_users"),
        ("PILOTAGE_IDLE_AFTER_S", "1e300", "idle_after_s"),
        ("PILOTAGE_PRICES_USD_PER_HOUR", '{"small": 1e400}', "prices_usd_per_hour.small"),
    ],
)
def test_numeric_settings_must_be_finite_and_in_range(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, setting: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"setting {setting!r}" in info.value.one_line() and "fix:" in info.value.one_line()


def test_default_settings_are_within_their_bounds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().rollout_poll_s == 0.5
