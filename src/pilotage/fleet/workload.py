"""What every instance of a managed service is started with: the one place its environment is built (issues 17, 19).

Every version Pilotage starts of a service with a descriptor — production (the fleet keeper), the two versions of a
rollout (the deployment agent's plan), a test instance (the testing stage) and a load-test instance (the
performance stage) — gets :func:`instance_env`: the descriptor's ``env``, ``scratch_env`` over it for a test or
load-test instance, and one variable per ``consumes`` entry set to that provider's stable address
(``http://127.0.0.1:PORT``, :func:`provider_addresses` from the fleet registry). The address is the provider's
*stable* one: a consumer follows its provider's deliveries without being restarted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pilotage.errors import ConfigError
from pilotage.fleet.descriptor import DESCRIPTOR_FILE, ServiceDescriptor, load_descriptor
from pilotage.fleet.registry import ManagedService
from pilotage.settings import Settings

__all__ = [
    "consumer_env",
    "instance_env",
    "production_data_dir",
    "provider_addresses",
    "workload_role",
]


def production_data_dir(settings: Settings, service: str) -> Path:
    """A managed service's production data folder (``{data}``), kept across deliveries: ``<home>/services/<s>/data``."""
    return settings.path_in_home("services").resolve() / service / "data"


def provider_addresses(fleet: Mapping[str, ManagedService]) -> dict[str, str]:
    """Return ``{service: stable address}`` of every managed service (``http://127.0.0.1:<stable_port>``)."""
    return {name: service.stable_url for name, service in fleet.items()}


def consumer_env(descriptor: ServiceDescriptor, addresses: Mapping[str, str]) -> dict[str, str]:
    """Return ``{consumes[i].env: address of consumes[i].service}`` for every provider the descriptor consumes.

    Args:
        descriptor: the consumer's descriptor (of the commit being started).
        addresses: service name → address (:func:`provider_addresses`; a caller may put another address for one
            provider, e.g. a preview).

    Raises:
        ConfigError: a provider is not in ``addresses`` (not managed here); names the descriptor's field.
    """
    env = {}
    for i, entry in enumerate(descriptor.consumes):
        if entry.service not in addresses:
            where = f"consumes[{i}].service"
            known = ", ".join(sorted(addresses)) or "none"
            raise ConfigError(
                f"{descriptor.path}: {where}: {entry.service!r} is not a managed service (managed: {known})",
                hint=f"`pilotage service add` {entry.service}'s repository first, or remove the entry",
                path=descriptor.path,
                field=where,
            )
        env[entry.env] = addresses[entry.service]
    return env


def instance_env(
    descriptor: ServiceDescriptor, addresses: Mapping[str, str], *, scratch: bool = False
) -> dict[str, str]:
    """The environment of an instance of ``descriptor``'s service: ``env``, [``scratch_env``], provider addresses.

    Values may still hold ``{data}``/``{prepared}``/``{python}`` (the runtime renders them,
    :func:`pilotage.fleet.descriptor.render_env`). The parser refuses a ``consumes`` variable that ``env`` or
    ``scratch_env`` also sets, so nothing here overrides anything.

    Raises:
        ConfigError: as :func:`consumer_env`.
    """
    scratch_env = descriptor.scratch_env if scratch else {}
    return {**descriptor.env, **scratch_env, **consumer_env(descriptor, addresses)}


def workload_role(
    version: str,
    path: str,
    prepared: str,
    env: dict[str, str],
    *,
    addresses: Mapping[str, str],
    data_dir: str = "",
    scratch: bool = False,
) -> dict[str, Any]:
    """One version of a ``deploy.requested`` plan, or an instance the keeper starts: ``{version, path, env}``.

    When ``path`` holds a descriptor (``pilotage.yaml``) the role also has ``command``, ``prepared``, ``health_path``,
    ``metrics``, ``ready_timeout_s`` when the descriptor sets it, and ``data_dir`` (``{data}``: production's folder
    for the versions a rollout runs, a fresh one for a ``scratch`` instance), and its ``env`` is
    :func:`instance_env` (``scratch_env`` for a scratch instance, the providers' ``addresses``) under the caller's
    ``env`` (e.g. an injected fault).

    Raises:
        ConfigError: the descriptor is invalid, or it consumes a service that is not in ``addresses``.
    """
    role: dict[str, Any] = {"version": version, "path": str(path), "env": dict(env)}
    if (Path(path) / DESCRIPTOR_FILE).is_file():
        descriptor = load_descriptor(path)
        role.update(
            command=descriptor.start,
            prepared=prepared,
            health_path=descriptor.health,
            metrics=descriptor.metrics,
            env={**instance_env(descriptor, addresses, scratch=scratch), **env},
            data_dir=data_dir,
        )
        if descriptor.ready_timeout_s:  # the rollout controller waits this long for its health (else the setting)
            role["ready_timeout_s"] = descriptor.ready_timeout_s
    return role
