"""Services under management: read-only checkouts, the cached prepare step, the registry folded from the log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pilotage.bus.memory import MemoryBus
from pilotage.catalogue import checked_event
from pilotage.errors import ConfigError, InputError
from pilotage.events import EventType
from pilotage.fleet.checkout import checkout, descriptor_at, prepare, resolve_rev
from pilotage.fleet.registry import add_service, load_fleet
from pilotage.graph.sqlite import SQLiteGraph
from tests.fixtures.fleet import commit_files as commit
from tests.fixtures.fleet import git

DESCRIPTOR = """\
name: shop
owner: team-shop
prepare:
  command: echo "$(cat requirements.txt)" > {prepared}/installed.txt && echo ran >> {prepared}/../runs.log
  inputs: [requirements.txt]
start: "{python} -m http.server {port} --bind 127.0.0.1"
health: /
"""


def make_repo(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.com")
    git(path, "config", "user.name", "Dev")
    commit(path, files, "initial")
    return path


def test_checkout_exports_a_commit_without_touching_the_repository(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "shop", {"pilotage.yaml": DESCRIPTOR, "app.py": "print('v1')\n"})
    first = resolve_rev(repo, "HEAD")
    commit(repo, {"app.py": "print('v2')\n"}, "v2")
    folder = checkout(repo, first, tmp_path / "checkouts")
    assert (folder / "app.py").read_text() == "print('v1')\n"
    assert folder.name == first[:12]
    assert git(repo, "status", "--porcelain") == ""  # nothing written in the user's repository
    assert git(repo, "worktree", "list").count("\n") == 0  # no worktree added
    assert checkout(repo, first, tmp_path / "checkouts") == folder  # idempotent
    assert (folder / "app.py").stat().st_mode & 0o077 == 0  # owner-only, as the whole state folder (issue 15)


def test_prepare_runs_once_per_content_of_its_inputs(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "shop", {"pilotage.yaml": DESCRIPTOR, "requirements.txt": "flask==3.1.3\n"})
    root = tmp_path / "state" / "shop"
    first = resolve_rev(repo, "HEAD")
    prepared = prepare(repo, first, descriptor_at(repo, first), root)
    assert prepared.ran and Path(prepared.prepared, "installed.txt").read_text().strip() == "flask==3.1.3"
    commit(repo, {"app.py": "x = 1\n"}, "code only")  # requirements unchanged: the same key
    second = resolve_rev(repo, "HEAD")
    again = prepare(repo, second, descriptor_at(repo, second), root)
    assert not again.ran and again.prepared == prepared.prepared and again.checkout != prepared.checkout
    commit(repo, {"requirements.txt": "flask==3.1.4\n"}, "bump")
    third = resolve_rev(repo, "HEAD")
    bumped = prepare(repo, third, descriptor_at(repo, third), root)
    assert bumped.ran and bumped.prepared != prepared.prepared
    assert (root / "prepared" / "runs.log").read_text().split() == ["ran", "ran"]


def test_a_failing_prepare_is_a_config_error_naming_the_field_and_leaves_no_cache(tmp_path: Path) -> None:
    bad = DESCRIPTOR.replace('echo "$(cat requirements.txt)"', "echo 'no such package' >&2; exit 7; echo")
    repo = make_repo(tmp_path / "shop", {"pilotage.yaml": bad, "requirements.txt": "x\n"})
    sha = resolve_rev(repo, "HEAD")
    with pytest.raises(ConfigError) as info:
        prepare(repo, sha, descriptor_at(repo, sha), tmp_path / "state")
    assert "prepare.command exited 7: no such package" in str(info.value)
    assert "pilotage.yaml" in str(info.value)
    assert not list((tmp_path / "state" / "prepared").glob("*/.prepared"))


def test_unknown_revision_and_missing_descriptor_are_named(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "shop", {"README.md": "no descriptor\n"})
    with pytest.raises(InputError, match=r"revision 'v9' not found in .*shop"):
        resolve_rev(repo, "v9")
    for option in ("--output=/tmp/x", "-h", " "):  # never handed to git as an option
        with pytest.raises(InputError, match=r"is not a git revision"):
            resolve_rev(repo, option)
    with pytest.raises(ConfigError, match=r"pilotage.yaml@[0-9a-f]{12}: the commit has no service descriptor"):
        descriptor_at(repo, resolve_rev(repo, "HEAD"))


def _add(tmp_path: Path, bus: MemoryBus, path: Path, port: int = 0) -> dict[str, object]:
    graph = SQLiteGraph(f"sqlite:///{tmp_path / 'graph.db'}")
    try:
        return asyncio.run(add_service(bus, graph, path, port_base=18950, port=port))
    finally:
        graph.close()


def test_add_service_records_production_and_a_stable_port_and_refuses_a_taken_name(tmp_path: Path) -> None:
    bus = MemoryBus()
    repo = make_repo(tmp_path / "shop", {"pilotage.yaml": DESCRIPTOR})
    data = _add(tmp_path, bus, repo)
    assert data["service"] == "shop" and data["commit"] == resolve_rev(repo, "HEAD")
    assert 18950 <= int(str(data["stable_port"])) < 19950
    twin = make_repo(tmp_path / "twin", {"pilotage.yaml": DESCRIPTOR})
    with pytest.raises(InputError, match=r"service name 'shop' .*twin/pilotage.yaml\) is already taken by .*shop"):
        _add(tmp_path, bus, twin)
    fleet = asyncio.run(load_fleet(bus))
    assert list(fleet) == ["shop"] and fleet["shop"].descriptor["owner"] == "team-shop"


def test_a_chosen_stable_port_out_of_range_or_held_by_another_service_is_refused(tmp_path: Path) -> None:
    bus = MemoryBus()
    shop = _add(tmp_path, bus, make_repo(tmp_path / "shop", {"pilotage.yaml": DESCRIPTOR}), port=19001)
    other = make_repo(tmp_path / "other", {"pilotage.yaml": DESCRIPTOR.replace("name: shop", "name: other")})
    for port, words in ((70000, "not a port from 1024 to 65535"), (-1, "not a port"), (22, "not a port"),
                        (19001, "the stable address of shop already")):  # fmt: skip
        with pytest.raises(InputError, match=words):
            _add(tmp_path, bus, other, port=port)
    assert list(asyncio.run(load_fleet(bus))) == ["shop"] and shop["stable_port"] == 19001  # nothing was added
    assert _add(tmp_path, bus, other, port=19002)["stable_port"] == 19002


def test_add_service_refuses_a_folder_that_is_not_a_git_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InputError, match=r"plain is not a git repository"):
        _add(tmp_path, MemoryBus(), plain)
    with pytest.raises(InputError, match=r"nowhere is not a folder"):
        _add(tmp_path, MemoryBus(), tmp_path / "nowhere")


def test_fleet_state_follows_releases_and_deliveries(tmp_path: Path) -> None:
    bus = MemoryBus()
    repo = make_repo(tmp_path / "shop", {"pilotage.yaml": DESCRIPTOR})
    first = str(_add(tmp_path, bus, repo)["commit"])

    async def scenario() -> None:
        run = {"run_id": "run-1", "service": "shop", "spec_path": "", "request": "deliver", "workdir": "/tmp/x"}
        run |= {"kind": "deliver", "rev": "abc"}
        await bus.publish(checked_event(EventType.FLOW_STARTED, run, source="t", subject="shop", runid="run-1"))
        released = {"service": "shop", "commit": "f" * 40, "previous_commit": first, "deployment_id": "d"}
        await bus.publish(checked_event(EventType.SERVICE_RELEASED, released | {"run_id": "run-1"}, source="t"))
        closed = {"run_id": "run-1", "status": "completed", "outcome": "promoted", "error": None}
        await bus.publish(checked_event(EventType.FLOW_COMPLETED, closed, source="t", runid="run-1"))

    asyncio.run(scenario())
    shop = asyncio.run(load_fleet(bus))["shop"]
    assert shop.production_commit == "f" * 40
    assert shop.deliveries[0]["run_id"] == "run-1" and shop.deliveries[0]["outcome"] == "promoted"
    assert shop.deliveries[0]["commit"] == "f" * 40
    # a release whose next member failed gives production back: the delivery shows rolled back, not promoted
    back = {"service": "shop", "commit": first, "previous_commit": "f" * 40, "deployment_id": "d", "run_id": "rel-1"}
    asyncio.run(bus.publish(checked_event(EventType.SERVICE_RELEASED, back | {"rolled_back_run": "run-1"}, source="t")))
    shop = asyncio.run(load_fleet(bus))["shop"]
    assert shop.production_commit == first and shop.deliveries[0]["outcome"] == "rolled_back"
    assert shop.deliveries[0]["error"] == "promoted, then rolled back by release rel-1"


def test_a_second_delivery_is_refused_while_one_runs_until_its_budget_passed(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from pilotage.fleet.registry import ManagedService, refuse_concurrent

    now = datetime.now(UTC)
    running = {"run_id": "run-1", "rev": "a" * 40, "status": "running", "outcome": ""}
    service = ManagedService("shop", str(tmp_path), 18950, "b" * 40, {}, [running | {"started": now.isoformat()}])
    with pytest.raises(InputError, match=r"a delivery of shop is in progress \(run run-1, aaaaaaaaaaaa, started \d+ s"):
        refuse_concurrent(service, 900.0)
    service.deliveries = [running | {"started": (now - timedelta(seconds=901)).isoformat()}]  # its process died
    refuse_concurrent(service, 900.0)
    service.deliveries = [running | {"started": now.isoformat(), "status": "completed"}]
    refuse_concurrent(service, 900.0)


GENERATED = "name: shop\nowner: pilotage\nstart: '{python} -m http.server {port} --bind 127.0.0.1'\nhealth: /\n"


def _register(tmp_path: Path, bus: MemoryBus, repo: Path, run_id: str) -> dict[str, object]:
    from pilotage.fleet.registry import register_generated

    graph = SQLiteGraph(f"sqlite:///{tmp_path / 'graph.db'}")
    try:
        sha = resolve_rev(repo, "HEAD")
        return asyncio.run(register_generated(bus, graph, repo, sha, run_id=run_id, port_base=18950))
    finally:
        graph.close()


def _start_run(bus: MemoryBus, run_id: str) -> None:
    run = {"run_id": run_id, "service": "shop", "spec_path": "", "request": "Add a thing", "workdir": "/tmp/x"}
    asyncio.run(bus.publish(checked_event(EventType.FLOW_STARTED, run, source="t", subject="shop", runid=run_id)))


def test_a_generated_service_is_replaced_by_the_next_run_and_its_runs_are_its_deliveries(tmp_path: Path) -> None:
    bus = MemoryBus()
    _start_run(bus, "run-1")
    first = make_repo(tmp_path / "run-1", {"pilotage.yaml": GENERATED})
    added = _register(tmp_path, bus, first, "run-1")
    assert added["generated"] is True and added["replaces"] == ""
    shop = asyncio.run(load_fleet(bus))["shop"]
    assert shop.generated and shop.repo_path == str(first) and shop.production_commit == resolve_rev(first, "HEAD")
    assert [d["run_id"] for d in shop.deliveries] == ["run-1"] and shop.deliveries[0]["rev"] == "Add a thing"
    with pytest.raises(InputError, match=r"a delivery of shop is in progress \(run run-1"):
        _register(tmp_path, bus, make_repo(tmp_path / "run-2", {"pilotage.yaml": GENERATED}), "run-2")
    closed = {"run_id": "run-1", "status": "completed", "outcome": "promoted", "error": None}
    asyncio.run(bus.publish(checked_event(EventType.FLOW_COMPLETED, closed, source="t", runid="run-1")))
    _start_run(bus, "run-2")
    again = _register(tmp_path, bus, tmp_path / "run-2", "run-2")
    assert again["replaces"] == str(first) and again["stable_port"] == added["stable_port"]  # same address
    shop = asyncio.run(load_fleet(bus))["shop"]
    assert shop.repo_path == str(tmp_path / "run-2") and [d["run_id"] for d in shop.deliveries] == ["run-1", "run-2"]
    assert _register(tmp_path, bus, tmp_path / "run-2", "run-2")["commit"] == shop.production_commit  # no re-add
    assert len([e for e in bus._log if e.type == EventType.SERVICE_ADDED]) == 2


def test_a_run_never_takes_over_a_service_added_by_hand(tmp_path: Path) -> None:
    bus = MemoryBus()
    _add(tmp_path, bus, make_repo(tmp_path / "shop", {"pilotage.yaml": DESCRIPTOR}))
    generated = make_repo(tmp_path / "generated", {"pilotage.yaml": GENERATED})
    with pytest.raises(InputError, match=r"service 'shop' is managed from .*shop, which Pilotage did not generate"):
        _register(tmp_path, bus, generated, "run-1")
    forged = {"service": "shop", "repo_path": str(generated), "commit": "a" * 40, "stable_port": 1, "descriptor": {}}
    forged |= {"generated": True, "replaces": str(tmp_path / "shop")}  # a service.added that tries anyway
    asyncio.run(bus.publish(checked_event(EventType.SERVICE_ADDED, forged, source="t", subject="shop")))
    assert asyncio.run(load_fleet(bus))["shop"].repo_path == str(tmp_path / "shop")
