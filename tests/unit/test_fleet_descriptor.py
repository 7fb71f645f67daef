"""The service descriptor: a valid pilotage.yaml round-trips; each bad input is one ConfigError naming file, field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from pilotage.errors import ConfigError, InputError
from pilotage.fleet.descriptor import (
    Credentials,
    Prepare,
    ServiceDescriptor,
    Traffic,
    descriptor_schema,
    load_descriptor,
    parse_descriptor,
    parse_descriptor_text,
    render_command,
)

VALID = """\
name: orders
owner: team-orders
description: Orders of the shop
prepare:
  command: python3 -m venv {prepared}/venv && {prepared}/venv/bin/pip install -r requirements.txt
  inputs: [requirements.txt]
  timeout_s: 300
start: "{prepared}/venv/bin/python -m uvicorn app.main:app --host 127.0.0.1 --port {port}"
env: {APP_MODE: test}
health: /livez
ready_timeout_s: 20
metrics: /metrics
openapi: openapi.yaml
slo: slo.yaml
test: "{prepared}/venv/bin/python -m pytest -q"
traffic:
  writes: true
  requests: ["GET /status/200", "POST /orders"]
  credentials: {header: Authorization, env: ORDERS_TOKEN}
providesApis: [orders-api]
consumesApis: [payments-api]
dependsOn: ["resource:orders-db"]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pilotage.yaml").write_text(text, encoding="utf-8")
    return tmp_path / "pilotage.yaml"


def refused(tmp_path: Path, text: str) -> ConfigError:
    """Load ``text`` from a real file and return the ConfigError, checking it is one line naming the file."""
    file = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_descriptor(tmp_path)
    line = info.value.one_line()
    assert "\n" not in str(info.value) and str(file) in line, line
    assert info.value.hint, line
    return info.value


def test_valid_descriptor_loads_and_round_trips(tmp_path: Path) -> None:
    descriptor = load_descriptor(write(tmp_path, VALID).parent)
    assert descriptor.path == str(tmp_path / "pilotage.yaml")
    assert descriptor.prepare == Prepare(
        "python3 -m venv {prepared}/venv && {prepared}/venv/bin/pip install -r requirements.txt",
        ("requirements.txt",),
        300.0,
    )
    assert descriptor.traffic == Traffic(
        True, ("GET /status/200", "POST /orders"), Credentials("Authorization", "ORDERS_TOKEN")
    )
    assert (descriptor.health, descriptor.metrics, descriptor.env) == ("/livez", "/metrics", {"APP_MODE": "test"})
    assert not descriptor.openapi_served and not descriptor.proxy_metrics
    data = descriptor.to_dict()
    json.dumps(data)  # JSON-serialisable
    jsonschema.validate(data, descriptor_schema())
    again = parse_descriptor(data, path=descriptor.path)
    assert again == descriptor and again.to_dict() == data


def test_minimal_descriptor_takes_the_defaults() -> None:
    descriptor = parse_descriptor_text("name: a\nstart: run --port {port}\n")
    assert descriptor == ServiceDescriptor(name="a", start="run --port {port}", path="pilotage.yaml")
    assert descriptor.health == "/healthz" and descriptor.proxy_metrics and descriptor.traffic.writes is False
    assert parse_descriptor(descriptor.to_dict()) == descriptor


def test_unknown_top_level_key(tmp_path: Path) -> None:
    error = refused(tmp_path, VALID + "replicas: 3\n")
    assert "(top level): unknown key 'replicas'" in error.message and "known keys here" in (error.hint or "")
    assert error.field == "(top level)"


def test_unknown_nested_key(tmp_path: Path) -> None:
    error = refused(tmp_path, "name: a\nstart: x {port}\ntraffic: {write: true}\n")
    assert error.message.endswith("pilotage.yaml: traffic: unknown key 'write'"), error.message
    assert error.hint == "known keys here: credentials, requests, writes"


def test_writes_must_be_a_boolean(tmp_path: Path) -> None:
    error = refused(tmp_path, 'name: a\nstart: x {port}\ntraffic: {writes: "yes"}\n')
    assert "traffic.writes: 'yes' is not of type 'boolean'" in error.message and error.field == "traffic.writes"


def test_health_must_be_a_string(tmp_path: Path) -> None:
    error = refused(tmp_path, "name: a\nstart: x {port}\nhealth: 5\n")
    assert "pilotage.yaml: health: 5 is not of type 'string'" in error.message and error.field == "health"


def test_no_start_command(tmp_path: Path) -> None:
    error = refused(tmp_path, "name: a\nhealth: /healthz\n")
    assert "'start' is a required property" in error.message and "pilotage init" in (error.hint or "")


def test_start_without_port(tmp_path: Path) -> None:
    error = refused(tmp_path, "name: a\nstart: python -m http.server 8000\n")
    assert error.message.endswith("start: the start command has no {port} placeholder") and error.field == "start"


def test_unknown_placeholder(tmp_path: Path) -> None:
    error = refused(tmp_path, "name: a\nstart: run --port {port} --dir {foo}\n")
    assert "pilotage.yaml: start: unknown placeholder {foo}" in error.message and error.field == "start"
    assert "{prepared}" in (error.hint or "") and "{{" in (error.hint or "")


def test_port_placeholder_only_in_start(tmp_path: Path) -> None:
    error = refused(tmp_path, 'name: a\nstart: run {port}\ntest: "pytest --port {port}"\n')
    assert "test: {port} is known to the start command only" in error.message and error.field == "test"
    error = refused(tmp_path, 'name: a\nstart: run {port}\nprepare: {command: "make {port}"}\n')
    assert error.field == "prepare.command" and "{port}" not in (error.hint or "")


@pytest.mark.parametrize("name", ["../etc", "a..b", "-rf", "", "x" * 64, "a/b"])
def test_bad_name(tmp_path: Path, name: str) -> None:
    error = refused(tmp_path, f"name: {json.dumps(name)}\nstart: x {{port}}\n")
    assert "pilotage.yaml: name: " in error.message and error.field == "name"


def test_not_yaml(tmp_path: Path) -> None:
    error = refused(tmp_path, "name: [orders\nstart: x {port}\n")
    assert "is not valid YAML/JSON at line" in error.message


def test_not_a_mapping(tmp_path: Path) -> None:
    error = refused(tmp_path, "- name: orders\n")
    assert "(top level): [{'name': 'orders'}] is not of type 'object'" in error.message


def test_missing_file_hint_names_pilotage_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_descriptor(tmp_path)
    assert info.value.message == f"{tmp_path / 'pilotage.yaml'}: no service descriptor"
    assert info.value.hint == f"run `pilotage init {tmp_path}` and commit it"


def test_render_command_quotes_the_values() -> None:
    line = render_command("{python} serve --port {port} --dir {prepared} {{literal}}", port=8080, prepared="/a b")
    assert line.endswith("serve --port 8080 --dir '/a b' {literal}")


def test_env_values_name_the_data_folder_and_scratch_env_overrides_them_for_test_instances(tmp_path: Path) -> None:
    from pilotage.fleet.descriptor import render_env
    from pilotage.fleet.workload import workload_role

    text = (
        'name: shop\nstart: "{python} -m app --port {port}"\n'
        'env: {DB: "{data}/shop.db", MODE: prod}\nscratch_env: {MODE: test}\n'
    )
    (tmp_path / "pilotage.yaml").write_text(text, encoding="utf-8")
    descriptor = parse_descriptor_text(text)
    assert render_env(descriptor.env, data="/srv/shop") == {"DB": "/srv/shop/shop.db", "MODE": "prod"}
    production = workload_role("v1", str(tmp_path), "", {}, addresses={}, data_dir="/srv/shop")
    scratch = workload_role("v1", str(tmp_path), "", {}, addresses={}, data_dir="/tmp/t", scratch=True)
    assert production["env"] == {"DB": "{data}/shop.db", "MODE": "prod"} and production["data_dir"] == "/srv/shop"
    assert scratch["env"]["MODE"] == "test" and scratch["data_dir"] == "/tmp/t"
    with pytest.raises(ConfigError, match=r"pilotage.yaml: env.DB: \{port\} is known to the start command only"):
        parse_descriptor_text(text.replace("{data}/shop.db", "{port}"))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ('test: "pytest\\u0000"\n', "test"),
        ("ready_timeout_s: .nan\n", "ready_timeout_s"),
        ('env: {A: "x\\u0007"}\n', "env.A"),
    ],
)
def test_control_characters_and_non_finite_timeouts_are_refused(extra: str, field: str) -> None:
    text = 'name: shop\nstart: "{python} -m app --port {port}"\n' + extra
    with pytest.raises(ConfigError, match=rf"pilotage.yaml: {field}: "):
        parse_descriptor_text(text)


def test_a_descriptor_cannot_name_a_credential_variable_the_operator_did_not_allow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pilotage.agents.deployment import traffic_plan

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret123")
    descriptor = (
        'name: shop\nstart: "{python} -m app --port {port}"\n'
        "traffic: {requests: ['GET /items'], credentials: {header: X-Leak, env: GITHUB_TOKEN}}\n"
    )
    (tmp_path / "pilotage.yaml").write_text(descriptor, encoding="utf-8")
    refused = traffic_plan("", "", str(tmp_path), [], allowed_envs=[])
    assert refused["credentials"] is None  # the value of GITHUB_TOKEN is never read nor sent
    allowed = traffic_plan("", "", str(tmp_path), [], allowed_envs=["GITHUB_TOKEN"])
    assert allowed["credentials"] == {"header": "X-Leak", "env": "GITHUB_TOKEN"}


def test_the_slo_file_a_descriptor_names_is_the_rollouts_slo(tmp_path: Path) -> None:
    from pilotage.agents.reliability import find_slo

    (tmp_path / "pilotage.yaml").write_text('name: shop\nstart: "x {port}"\nslo: ops/slo.yaml\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"pilotage.yaml: slo: ops/slo.yaml is not a file of the commit"):
        find_slo("shop", str(tmp_path), "")
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "slo.yaml").write_text(
        "service: shop\nobjectives:\n  - name: availability\n    sli: {kind: availability}\n    target: 0.95\n"
        "    window_days: 30\n",
        encoding="utf-8",
    )
    slo = find_slo("shop", str(tmp_path), "")
    assert [o.target for o in slo.objectives] == [0.95]


ONE_LINE = 'name: shop\nstart: "x {port}"\n'


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ('name: "ab\\n"\nstart: "x {port}"\n', "name", "'ab\\n' is not a service name"),
        (ONE_LINE + 'env: {"FOO\\n": bar}\n', "env", "'FOO\\n' is not an environment variable name"),
        (ONE_LINE + 'scratch_env: {"FOO\\n": bar}\n', "scratch_env", "is not an environment variable name"),
        (ONE_LINE + 'traffic: {requests: ["GET /x\\n"]}\n', "traffic.requests[0]", "'GET /x\\n' is not 'METHOD /path'"),
        (ONE_LINE + 'traffic: {credentials: {header: "X-Key\\n", env: K}}\n', "traffic.credentials.header",
         "is not a header name"),
        (ONE_LINE + 'traffic: {credentials: {header: X-Key, env: "K\\n"}}\n', "traffic.credentials.env",
         "is not an environment variable name"),
        (ONE_LINE + 'consumes: [{service: "p\\n", env: P_URL, operations: [a]}]\n', "consumes[0].service",
         "is not a service name"),
        (ONE_LINE + 'consumes: [{service: p, env: "P_URL\\n", operations: [a]}]\n', "consumes[0].env",
         "is not an environment variable name"),
        (ONE_LINE + 'consumes: [{service: p, env: P_URL, operations: ["a\\n"]}]\n', "consumes[0].operations[0]",
         "control character"),
        (ONE_LINE + 'health: "/healthz\\n"\n', "health", "is not a URL path"),
        (ONE_LINE + 'metrics: "proxy\\n"\n', "metrics", "is not a URL path"),
        (ONE_LINE + 'openapi: "/openapi.json\\n"\n', "openapi", "holds a line break or a control character"),
        (ONE_LINE + 'owner: "team\\n"\n', "owner", "holds a line break or a control character"),
        (ONE_LINE + 'slo: "slo.yaml\\n"\n', "slo", "holds a line break or a control character"),
        (ONE_LINE + 'providesApis: ["orders\\n"]\n', "providesApis[0]", "holds a line break"),
        (ONE_LINE + 'dependsOn: ["orders\\n"]\n', "dependsOn[0]", "holds a line break"),
    ],
)  # fmt: skip
def test_a_one_line_field_ending_in_a_newline_is_refused_at_parse(
    tmp_path: Path, text: str, field: str, words: str
) -> None:
    """Python's ``$`` matches before a final newline: each schema pattern's end is ``$(?!\\n)``, as in ECMA-262."""
    error = refused(tmp_path, text)
    assert error.field == field and f"pilotage.yaml: {field}: " in error.message and words in error.message, error
    assert "pilotage init --schema" not in (error.hint or ""), error.hint  # a fix for this field, not the schema
    assert parse_descriptor_text(text.replace("\\n", ""))  # the same value on one line is accepted


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("health", "/healthz\\r\\nX-Injected: 1"),
        ("health", "/healthz\\u0000"),
        ("health", "healthz"),
        ("health", "/health z"),
        ("health", "/healthz#ready"),
        ("health", "http://example.com/healthz"),
        ("metrics", "/metrics\\r\\nX-Injected: 1"),
        ("metrics", "/metrics\\u007f"),
        ("metrics", "metrics"),
    ],
)
def test_health_and_metrics_must_be_url_paths_on_one_line(tmp_path: Path, field: str, value: str) -> None:
    error = refused(tmp_path, f'{ONE_LINE}{field}: "{value}"\n')
    actual = json.loads(f'"{value}"')  # the string YAML read (the same escapes as JSON here)
    assert error.message.endswith(f"pilotage.yaml: {field}: {actual!r} is not a URL path"), error.message
    assert error.field == field and "starting with '/'" in (error.hint or "")


def test_health_and_metrics_paths_that_are_paths_are_kept() -> None:
    descriptor = parse_descriptor_text(ONE_LINE + "health: /status/200?full=1\nmetrics: /-/metrics;v=2\n")
    assert (descriptor.health, descriptor.metrics) == ("/status/200?full=1", "/-/metrics;v=2")
    assert parse_descriptor_text(ONE_LINE + "metrics: proxy\n").proxy_metrics


@pytest.mark.parametrize(
    ("text", "field", "where"),
    [
        ('name: dup\nname: dup2\nstart: "x {port}"\n', "name", "at lines 1 and 2"),
        (ONE_LINE + "traffic:\n  writes: false\n  writes: true\n", "traffic.writes", "at lines 4 and 5"),
        (ONE_LINE + "consumes:\n  - {service: p, env: A, env: B, operations: [a]}\n", "consumes[0].env",
         "at line 4, columns 18 and 26"),
        ('{"name": "dup", "start": "x {port}", "name": "dup2"}', "name", "at line 1, columns 2 and 38"),
    ],
)  # fmt: skip
def test_a_key_written_twice_is_refused_naming_it_and_its_lines(
    tmp_path: Path, text: str, field: str, where: str
) -> None:
    error = refused(tmp_path, text)
    assert error.message == f"service descriptor {tmp_path / 'pilotage.yaml'} writes the key {field} twice {where}"
    assert error.field == field and "keep one" in (error.hint or "")
    with pytest.raises(ConfigError, match=f"writes the key {re.escape(field)} twice"):
        parse_descriptor_text(text)  # `git show REV:pilotage.yaml` is read the same way


def test_keys_a_yaml_merge_brings_may_be_overridden_and_other_documents_keep_the_last_key() -> None:
    from pilotage.spec.load import parse_document

    text = ONE_LINE + "env: &common {MODE: prod, LOG: info}\nscratch_env: {<<: *common, MODE: test}\n"
    assert parse_descriptor_text(text).scratch_env == {"MODE": "test", "LOG": "info"}
    assert parse_document("a: 1\na: 2\n") == {"a": 2}  # OpenAPI documents, SLO files: unchanged
    with pytest.raises(InputError, match=r"spec file x.json writes the key a twice \(fix: keep one a in x.json"):
        parse_document('{"a": 1, "a": 2}', path="x.json", syntax="json", unique_keys=True)
