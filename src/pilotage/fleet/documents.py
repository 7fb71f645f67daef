"""A managed service's OpenAPI document at a commit (issue #19): for the fleet graph, ``consumes`` and impact.

The descriptor's ``openapi`` is either a repository file or a path the running service serves (``/openapi.json``):

* **a file** is read from the commit's read-only export (:func:`pilotage.fleet.checkout.checkout`);
* **a served document** is read, in this order, from the cache ``<home>/services/<name>/documents/<sha12>/``
  (a commit's document does not change), from the service's stable address when the commit is production and
  the address answers, or — when a runtime is given — from a scratch instance of the commit started for it
  (prepared, started with :func:`pilotage.fleet.workload.instance_env` ``scratch=True``, stopped after the fetch).
  What was fetched is cached; a document that does not validate is not.

Both go through :func:`pilotage.testing.descriptor_suite.resolve_openapi` (the bounded fetch, the validating loader),
so a document is accepted here exactly when the testing stage accepts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pilotage.errors import ConfigError, InputError, PilotageError
from pilotage.fleet.checkout import checkout, descriptor_at, prepare
from pilotage.fleet.deps import check_consumes
from pilotage.fleet.descriptor import ServiceDescriptor
from pilotage.fleet.registry import ManagedService
from pilotage.fleet.workload import instance_env, provider_addresses
from pilotage.runtime.base import InstanceRuntime, Workload, scratch_workload
from pilotage.settings import Settings
from pilotage.spec.load import load_spec
from pilotage.testing.descriptor_suite import SERVED_SPEC, resolve_openapi

__all__ = ["DocumentSource", "LoadedDocument", "check_consumed", "remember_document"]


@dataclass(frozen=True)
class LoadedDocument:
    """A validated, bundled document: ``doc``, the file it was read from, and where it came from (``source``)."""

    doc: dict[str, Any]
    path: Path
    source: str


def _documents_dir(settings: Settings, service: str, sha: str) -> Path:
    return settings.path_in_home("services").resolve() / service / "documents" / sha[:12]


def _cached(folder: Path) -> Path | None:
    return next(iter(sorted(folder.glob(f"{SERVED_SPEC}.*"))), None) if folder.is_dir() else None


def remember_document(settings: Settings, service: str, sha: str, path: str | Path) -> None:
    """Cache the served document of ``service`` at ``sha`` that a delivery's testing stage saved (``path``)."""
    source = Path(path)
    folder = _documents_dir(settings, service, sha)
    if source.is_file() and _cached(folder) is None:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / f"{SERVED_SPEC}{source.suffix or '.json'}")


def _answers(url: str) -> bool:
    """The stable address accepts a TCP connection (it serves, or its route is open and wakes the service)."""
    host, _, port = url.removeprefix("http://").partition(":")
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1.0):
        return True
    return False


class DocumentSource:
    """Loads managed services' documents (module docstring).

    Args:
        settings: the home (checkouts, prepared folders, the cache) and the fetch timeout.
        runtime: starts a scratch instance for a served document nothing else gives; None: never start one.
    """

    def __init__(self, settings: Settings, runtime: InstanceRuntime | None = None) -> None:
        self.settings, self.runtime = settings, runtime

    async def production(self, service: ManagedService, fleet: dict[str, ManagedService]) -> LoadedDocument | None:
        """The document of ``service``'s production commit (None: its descriptor names none).

        Raises:
            ConfigError: it cannot be loaded (:meth:`at`).
        """
        return await self.at(service, service.production_commit, service.production_descriptor(), fleet)

    async def at_rev(
        self, service: ManagedService, sha: str, fleet: dict[str, ManagedService]
    ) -> tuple[ServiceDescriptor, LoadedDocument | None]:
        """The descriptor of commit ``sha`` of ``service`` and its document (:meth:`at`).

        Raises:
            ConfigError: the commit has no valid descriptor, or its document cannot be loaded.
        """
        descriptor = await asyncio.to_thread(descriptor_at, service.repo_path, sha)
        return descriptor, await self.at(service, sha, descriptor, fleet)

    async def at(
        self, service: ManagedService, sha: str, descriptor: ServiceDescriptor, fleet: dict[str, ManagedService]
    ) -> LoadedDocument | None:
        """The document ``descriptor`` names at commit ``sha`` of ``service`` (None: it names none).

        Raises:
            ConfigError: the document cannot be loaded: a file the commit lacks or that is not valid OpenAPI 3, a
                served document nothing serves (no cache, not production or not answering, no runtime), a scratch
                instance that does not start; one line naming the service, the commit and why.
        """
        if not descriptor.openapi:
            return None
        what = f"{descriptor.openapi} of {service.name} at {sha[:12]}"
        try:
            if descriptor.openapi_served:
                return await self._served(service, sha, descriptor, fleet, what)
            folder = await asyncio.to_thread(checkout, service.repo_path, sha, self._root(service) / "checkouts")
            path = await resolve_openapi(descriptor.openapi, folder, folder)
            assert path is not None  # openapi is set
            return LoadedDocument(await asyncio.to_thread(load_spec, path), path, f"file {what}")
        except (ConfigError, InputError) as exc:
            raise ConfigError(
                f"the OpenAPI document {what} cannot be loaded: {exc.message}",
                hint=exc.hint or f"fix `openapi` in {service.name}'s pilotage.yaml",
                field="openapi",
            ) from exc

    def _root(self, service: ManagedService) -> Path:
        return self.settings.path_in_home("services").resolve() / service.name

    async def _served(
        self, service: ManagedService, sha: str, descriptor: ServiceDescriptor, fleet: dict[str, Any], what: str
    ) -> LoadedDocument:
        folder = _documents_dir(self.settings, service.name, sha)
        cached = _cached(folder)
        if cached is not None:
            return LoadedDocument(await asyncio.to_thread(load_spec, cached), cached, f"served {what} (cached)")
        if sha == service.production_commit and await asyncio.to_thread(_answers, service.stable_url):
            return await self._fetch(descriptor, folder, service.stable_url, f"served {what} (stable address)")
        if self.runtime is None:
            raise ConfigError(
                f"only the running service serves it, and {service.name} {sha[:12]} is not running",
                hint=f"`pilotage up` serves it (the graph learns its operations then), or name a repository file "
                f"in {service.name}'s `openapi`",
            )
        return await self._scratch(service, sha, descriptor, fleet, folder, what)

    async def _fetch(self, descriptor: ServiceDescriptor, folder: Path, base_url: str, source: str) -> LoadedDocument:
        timeout_s = float(self.settings.testing_request_timeout_s)
        try:
            path = await resolve_openapi(descriptor.openapi, folder, folder, base_url=base_url, timeout_s=timeout_s)
            assert path is not None
            return LoadedDocument(await asyncio.to_thread(load_spec, path), path, source)
        except PilotageError:
            shutil.rmtree(folder, ignore_errors=True)  # never cache what did not validate
            raise

    async def _scratch(
        self,
        service: ManagedService,
        sha: str,
        descriptor: ServiceDescriptor,
        fleet: dict[str, ManagedService],
        folder: Path,
        what: str,
    ) -> LoadedDocument:
        """Prepare and start commit ``sha`` as a throw-away instance, fetch its document, stop it."""
        assert self.runtime is not None
        prepared = await asyncio.to_thread(prepare, service.repo_path, sha, descriptor, self._root(service))
        env = instance_env(descriptor, provider_addresses(fleet), scratch=True)
        with tempfile.TemporaryDirectory(prefix=f"pilotage-doc-{service.name}-") as data:
            workload = Workload(
                service.name, f"doc-{sha[:12]}", prepared.checkout, env=env, command=descriptor.start,
                prepared=prepared.prepared, health_path=descriptor.health, data_dir=data,
            )  # fmt: skip
            ready_s = descriptor.ready_timeout_s or self.settings.service_ready_timeout_s
            async with scratch_workload(self.runtime, workload, ready_timeout_s=ready_s) as instance:
                return await self._fetch(descriptor, folder, instance.url, f"served {what} (scratch instance)")


async def check_consumed(
    source: DocumentSource, descriptor: ServiceDescriptor, fleet: dict[str, ManagedService]
) -> None:
    """Check ``descriptor``'s ``consumes`` against the fleet: each provider managed, each operation in its document.

    :func:`pilotage.fleet.deps.check_consumes` on each provider's production document, loaded by ``source``.

    Raises:
        ConfigError: an unknown provider or operation (naming the descriptor's field), or a provider's document
            that cannot be loaded (naming the provider, its commit and why).
    """
    documents: dict[str, dict[str, Any] | None] = {}
    for entry in descriptor.consumes:
        provider = fleet.get(entry.service)
        if provider is not None and entry.service not in documents:
            loaded = await source.production(provider, fleet)
            documents[entry.service] = loaded.doc if loaded else None
    check_consumes(descriptor, sorted(fleet), documents)
