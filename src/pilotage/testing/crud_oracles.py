"""The oracles of the generated CRUD chain tests: the resource life cycle, and the tests of their own.

Everything below the ``# --- copied below ---`` marker is copied verbatim into ``test_pilotage_api_crud.py`` after
:mod:`~pilotage.testing.crud_support`'s part, whose steps (one request and its checks) and globals it uses; the
imports above the marker stand for them so that this module type-checks alone.

A chain (:func:`run_chain`, one hypothesis example): create the parent when the collection is nested, ``POST`` a
body drawn from the spec (positive data) → 2xx and the sent fields come back; ``GET`` the item → 200 and equal to
the created object; the collection's ``GET`` (when it returns an array) lists it with the same fields; every search
(a ``GET`` below the collection with query parameters named like resource properties, e.g.
``/pet/findByStatus?status=``) asked for the resource's own values returns it, and an enum/boolean filter returns
only matching items; a nested item is not listed under a second parent created for the check; ``DELETE`` → 2xx,
then ``GET`` → 404, the list no longer has it, and every update, operation below the item
(``POST /pet/{petId}/uploadImage``) or second ``DELETE`` that declares 404 answers 404. A create that omits a
property with a declared default gets the default; a ``GET`` on the collection, the item or below it without its
optional query parameters answers as with their declared defaults, accepts an integer query parameter at its
declared bounds and rejects (4xx) the values just outside them.
Tests of their own, so that one finding does not hide the others: every update (item ``PUT``/``PATCH``, an item
``POST`` naming properties, a collection ``PUT`` with the key in the body) → 2xx, then ``GET`` shows the sent body
fields and query values, and the searches agree (:func:`run_updates`); a new resource created after a delete must
not get the deleted one's key again when the service assigns keys (:func:`run_key_reuse`); keys at integer
boundaries get no server error (:func:`run_unknown_keys`); when the list declares a page-size default ``D`` ≤ 100,
``D + 1`` resources are created and the list without the parameter returns at most ``D`` and with ``limit=1`` at
most 1 (:func:`run_paging`); three ``GET`` of an operation that needs no parameter raise ``http_requests_total`` on
``/metrics`` for their status by at least three, Pilotage's metrics contract (:mod:`~pilotage.testing.metrics_support`).
"""

from __future__ import annotations

from typing import Any

from hypothesis import reject
from hypothesis import strategies as st

from pilotage.testing.crud_support import (
    API_URL,
    CHAINS,
    HEADERS,
    TIMEOUT_S,
    _call,
    _compare,
    _create,
    _draw,
    _fail,
    _fresh,
    _get,
    _items,
    _json,
    _json_body,
    _listed,
    _placeholder,
    _same,
    _status,
    _step,
    _strategy,
    _update_strategy,
    _valid,
    schema,
)

__all__ = ["run_chain", "run_key_reuse", "run_paging", "run_unknown_keys", "run_updates"]

# --- copied below ---


import contextlib  # noqa: E402
from collections.abc import Iterator  # noqa: E402


def _query(search: dict[str, Any], scope: dict[str, Any], query: dict[str, Any], trail: list[str]) -> tuple[Any, str]:
    """Call a search with ``query`` (booleans as ``true``/``false``, the page size at its maximum); the items."""
    sent = {p: (str(v).lower() if isinstance(v, bool) else v) for p, v in query.items()}
    if search["limit"]:
        sent[search["limit"][0]] = search["limit"][1]
    what = f"GET {search['path']} with {sent}"
    items = _items(schema[search["path"]]["GET"].Case(path_parameters=scope, query=sent, headers={}), what, trail)
    for name in set(search["exact"]) & set(query):
        wrong = [i for i in items if isinstance(i, dict) and name in i and not _same(i[name], query[name])]
        if wrong:
            _fail(f"{what} returned {len(wrong)} item(s) whose {name} is not {query[name]!r}: {wrong[:2]}", trail)
    return items, what


def _search(
    chain: dict[str, Any], search: dict[str, Any], scope: dict[str, Any], current: Any, trail: list[str]
) -> None:
    """Ask a search for the resource's own values: it must return the resource.

    Enum/boolean filters return only matching items, and asked for another value of such a filter, the search must
    not return the resource.
    """
    if not isinstance(current, dict):
        return
    wanted = {p: current[p] for p in search["params"] if isinstance(current.get(p), str | int | float | bool)}
    if not wanted:
        return
    key = current.get(chain["key"])
    items, what = _query(search, scope, wanted, trail)
    found = any(isinstance(i, dict) and _same(i.get(chain["key"]), key) for i in items)
    if not found and not (search["limit"] and len(items) >= search["limit"][1]):
        _fail(f"{what} does not return the resource whose {sorted(wanted)} it asked for", trail)
    for name, values in search["exact"].items():
        other = next((v for v in values if name in wanted and not _same(v, wanted[name])), None)
        if other is None:
            continue
        items, what = _query(search, scope, {**wanted, name: other}, trail)
        if any(isinstance(i, dict) and _same(i.get(chain["key"]), key) for i in items):
            _fail(f"{what} returns the resource whose {name} is {wanted[name]!r}", trail)


def _update(
    chain: dict[str, Any], update: dict[str, Any], case: Any, params: dict[str, Any], key: Any, trail: list[str]
) -> Any:
    """Send the drawn update to the existing resource; ``GET`` must show the sent fields. Return the fresh state."""
    if update["via"] == "body":  # the key travels in the body (``PUT /pet``); the path holds the scope only
        params = {k: v for k, v in params.items() if k != chain["param"]}
        if not isinstance(case.body, dict):
            return None
    case.path_parameters = {**(case.path_parameters or {}), **params}
    if isinstance(case.body, dict) and (update["via"] == "body" or chain["key"] in case.body):
        case.body[chain["key"]] = key  # an update that renames the key is another test
    response = _call(case, trail)
    what = f"{update['method']} {update['path']} of an existing resource (a request valid by the spec)"
    _status(response, what, trail)
    body = _json_body(case)
    sent = {k: v for k, v in body.items() if k != chain["key"]} if isinstance(body, dict) else {}
    sent |= {k: v for k, v in (case.query or {}).items() if k != chain["key"] and _valid(v, chain["scalars"].get(k))}
    current = _fresh(chain, {**params, chain["param"]: key}, f"after {update['method']} {update['path']}", trail)
    _compare(sent, current, f"GET {chain['item']} after {update['method']} {update['path']}", trail)
    return current


def _delete(
    chain: dict[str, Any], params: dict[str, Any], scope: dict[str, Any], key: Any, updates: list[Any], trail: list[str]
) -> None:
    """Delete the resource; then ``GET`` answers 404, the list no longer has it, updates/deletes declaring 404 do."""
    item = chain["item"]
    delete = schema[item]["DELETE"]
    response = _call(delete.Case(path_parameters=params, headers={}), trail)
    if not 200 <= response.status_code < 300:
        _fail(f"DELETE {item} of an existing resource answered {response.status_code}, not 2xx", trail)
    response = _get(chain, params, trail) if chain["has_get"] else None
    if response is not None and response.status_code != 404:
        _fail(f"GET {item} after DELETE answered {response.status_code}, not 404", trail)
    if chain["has_list"] and _listed(chain, scope, key, trail) not in (None, ...):
        _fail(f"GET {chain['collection']} still lists the resource deleted", trail)
    for update, case in updates:  # the updates, and what hangs below the resource (``below``)
        if case is None:
            continue
        if update["via"] == "path":
            case.path_parameters = {**(case.path_parameters or {}), **params}
        elif isinstance(case.body, dict):  # the key travels in the body (``PUT /pet``)
            case.path_parameters = {**(case.path_parameters or {}), **scope}
            case.body[chain["key"]] = key
        else:
            continue
        response = _call(case, trail)
        what = f"{update['method']} {update['path']} of the deleted resource"
        if update["not_found"] and response.status_code != 404:
            _fail(f"{what} answered {response.status_code}, not the 404 the spec declares", trail)
        if response.status_code >= 500:  # without a declared 404: any answer but a server error
            _fail(f"{what} answered {response.status_code}", trail)
    if chain["delete_not_found"]:
        response = _call(delete.Case(path_parameters=params, headers={}), trail)
        if response.status_code != 404:
            _fail(f"a second DELETE {item} answered {response.status_code}, not the 404 the spec declares", trail)


def _discard(item: str, params: dict[str, Any]) -> None:
    """Delete what a test created, best effort: the answer and any error are ignored (clean-up, not a check)."""
    with contextlib.suppress(Exception):
        schema[item]["DELETE"].Case(path_parameters=params, headers={}).call(
            base_url=API_URL, headers=HEADERS, timeout=TIMEOUT_S
        )


def run_chain(data: st.DataObject, name: str) -> None:
    """Run the create → read → list → update → read → delete → read chain of resource ``name`` (``CHAINS[name]``).

    A failing chain deletes what it created (best effort), so that hypothesis' replay of the failing example does
    not meet a 409 from its own first attempt (unique fields) and report that instead of the failure.
    """
    created: list[tuple[str, dict[str, Any]]] = []
    try:
        _run_chain(data, name, created)
    except AssertionError:
        for item, params in reversed(created):
            _discard(item, params)
        raise


def _run_chain(data: st.DataObject, name: str, cleanup: list[tuple[str, dict[str, Any]]]) -> None:
    chain, trail = CHAINS[name], list[str]()
    cases = _draw(data, name)
    placeholder = _placeholder(chain)
    updates = [(u, data.draw(_update_strategy(chain, u, placeholder))) for u in chain["updates"]]
    below = [(b, data.draw(_strategy(schema[b["path"]][b["method"]], placeholder))) for b in chain["below"]]
    sibling = []
    if chain["parent"] and chain["has_list"]:  # a second parent, and a child body to send once it is deleted
        child = data.draw(_strategy(schema[chain["collection"]]["POST"], placeholder))
        sibling = [*_draw(data, chain["parent"]), child]
    _step("create")
    created, scope = _create(cases, name, trail, cleanup)
    key = created[chain["key"]]
    params = {**scope, chain["param"]: key}
    _step("read")
    current = _fresh(chain, params, "just created", trail)
    _compare(created, current, f"GET {chain['item']} after create", trail)
    if chain["has_list"]:
        _step("list")
        listed = _listed(chain, scope, key, trail)
        if listed is None:
            _fail(f"GET {chain['collection']} does not list the resource just created", trail)
        if listed is not ...:
            _compare(created, listed, f"GET {chain['collection']} after create", trail)
    _step("defaults")
    for defaulted in chain["defaulted"]:
        _same_answer(defaulted, params, trail)
    _step("bounds")
    for bounded in chain["bounded"]:
        _bounds(bounded, params, trail)
    _step("isolation")
    if sibling:
        _isolated(chain, sibling, key, trail, cleanup)
    _step("search")
    for search in chain["searches"]:
        _search(chain, search, scope, current, trail)
    if chain["delete"]:
        _step("delete")
        _delete(chain, params, scope, key, [*updates, *below], trail)


@contextlib.contextmanager
def _scratch(cases: list[Any], name: str, trail: list[str]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Create resource ``name`` (and its parents) from the drawn ``cases`` and yield ``(resource, scope)``.

    Afterwards everything created is deleted (best effort, whatever the block raised).
    """
    created: list[tuple[str, dict[str, Any]]] = []
    try:
        _step("create")
        yield _create(cases, name, trail, created)
    finally:
        for item, params in reversed(created):
            _discard(item, params)


def run_updates(data: st.DataObject, name: str) -> None:
    """Create a resource and send it every update (``CHAINS[name]["updates"]``); then delete what was created.

    Each update must be visible on read, and the searches must agree with the updated values.

    A test of its own, so that an update the service mishandles (e.g. a 500 on a ``null`` it declares valid) does
    not hide the life-cycle oracles of :func:`run_chain`.
    """
    chain, trail = CHAINS[name], list[str]()
    cases = _draw(data, name)
    placeholder = _placeholder(chain)
    updates = [(u, data.draw(_update_strategy(chain, u, placeholder))) for u in chain["updates"]]
    with _scratch(cases, name, trail) as (current, scope):
        key = current[chain["key"]]
        _step("update")
        for update, case in updates:
            current = _update(chain, update, case, {**scope, chain["param"]: key}, key, trail) or current
        _step("search after update")
        for search in chain["searches"]:
            _search(chain, search, scope, current, trail)


def _in_path(path: str, params: dict[str, Any]) -> dict[str, Any]:
    """The path parameters ``path`` names (a collection path takes the scope, not the item key)."""
    return {k: v for k, v in params.items() if "{" + k + "}" in path}


def _same_answer(defaulted: dict[str, Any], params: dict[str, Any], trail: list[str]) -> None:
    """``GET`` without the optional query parameters must answer as ``GET`` with their declared defaults."""
    operation = schema[defaulted["path"]]["GET"]
    params = _in_path(defaulted["path"], params)
    implicit = _call(operation.Case(path_parameters=params, query={}, headers={}), trail)
    explicit = _call(operation.Case(path_parameters=params, query=dict(defaulted["params"]), headers={}), trail)
    what = f"GET {defaulted['path']}"
    if implicit.status_code != explicit.status_code:
        _fail(f"{what} answered {implicit.status_code} without {sorted(defaulted['params'])} and "
              f"{explicit.status_code} with their declared defaults {defaulted['params']}", trail)  # fmt: skip
    if 200 <= implicit.status_code < 300 and implicit.content != explicit.content:
        body = implicit.content[:200]
        _fail(f"{what} without {sorted(defaulted['params'])} answered {body!r}, not what it answers with the "
              f"declared defaults {defaulted['params']}", trail)  # fmt: skip


def _bounds(bounded: dict[str, Any], params: dict[str, Any], trail: list[str]) -> None:
    """A ``GET`` of an existing resource: a query parameter at its declared bounds → 2xx, just outside them → 4xx.

    Boundary value analysis where the resource exists, so that a 404 does not hide the answer (schemathesis' cases
    mostly name resources that do not exist).
    """
    operation = schema[bounded["path"]]["GET"]
    params = _in_path(bounded["path"], params)
    name, what = bounded["param"], f"GET {bounded['path']}"
    for values, expected, where in ((bounded["valid"], 200, "within"), (bounded["invalid"], 400, "outside")):
        for value in values:
            if value is None:
                continue
            response = _call(operation.Case(path_parameters=params, query={name: value}, headers={}), trail)
            if not expected <= response.status_code < expected + 100:
                _fail(f"{what}?{name}={value} ({where} its declared range) answered {response.status_code}, "
                      f"not {expected // 100}xx", trail)  # fmt: skip


def _isolated(
    chain: dict[str, Any], cases: list[Any], key: Any, trail: list[str], cleanup: list[tuple[str, dict[str, Any]]]
) -> None:
    """Create a second parent: its list must not hold the item just created under the first one.

    Then delete that parent: creating an item under it must answer 404 when the ``POST`` declares 404.
    """
    orphan = cases.pop()  # drawn with the parents' bodies: a child body for the deleted parent
    parent, parent_scope = _create(cases, chain["parent"], trail, cleanup)
    scope = {**parent_scope, chain["scope_param"]: parent[CHAINS[chain["parent"]]["key"]]}
    if _listed(chain, scope, key, trail) not in (None, ...):
        _fail(f"GET {chain['collection']} of another {chain['scope_param']} lists the resource created", trail)
    parent_chain = CHAINS[chain["parent"]]
    if not parent_chain["delete"]:
        return
    params = {**parent_scope, parent_chain["param"]: parent[parent_chain["key"]]}
    response = _call(schema[parent_chain["item"]]["DELETE"].Case(path_parameters=params, headers={}), trail)
    if not (chain["create_not_found"] and 200 <= response.status_code < 300):
        return
    orphan.path_parameters = {**(orphan.path_parameters or {}), **scope}
    response = _call(orphan, trail)
    if response.status_code != 404:
        what = f"POST {chain['collection']} under a deleted {chain['scope_param']}"
        _fail(f"{what} answered {response.status_code}, not the 404 the spec declares", trail)


def run_key_reuse(data: st.DataObject, name: str) -> None:
    """Create a resource, delete it, create another: a key the service assigns must not be the deleted one's again.

    A test of its own (not a step of :func:`run_chain`): services that hand out ``max(id) + 1`` (SQLite's rowid
    without ``AUTOINCREMENT``) reuse keys by design, and that finding must not hide the life-cycle oracles.
    """
    chain, trail = CHAINS[name], list[str]()
    cases = _draw(data, name)
    placeholder = _placeholder(chain)
    again = data.draw(_strategy(schema[chain["collection"]]["POST"], placeholder))
    with _scratch(cases, name, trail) as (resource, scope):
        key = resource[chain["key"]]
        _step("key reuse")
        response = _call(schema[chain["item"]]["DELETE"].Case(path_parameters={**scope, chain["param"]: key},
                                                              headers={}), trail)  # fmt: skip
        if not 200 <= response.status_code < 300:
            _fail(f"DELETE {chain['item']} of an existing resource answered {response.status_code}, not 2xx", trail)
        _recreate(chain, again, scope, key, trail)


def _recreate(chain: dict[str, Any], case: Any, scope: dict[str, Any], gone: Any, trail: list[str]) -> None:
    """Create another resource after a delete: a key the service assigns must not be the deleted one's again.

    A reused key makes a stale reference (a link, a cached id, a retried request) reach a different resource. Keys
    the client chooses (sent in the body, e.g. a username) are not checked. The new resource is deleted again.
    """
    body = _json_body(case) if case is not None else None
    if not isinstance(body, dict) or chain["key"] in body:
        return
    case.path_parameters = {**(case.path_parameters or {}), **scope}
    response = _call(case, trail)
    if response.status_code == 409:
        return
    what = f"POST {chain['collection']} after a DELETE"
    _status(response, what, trail)
    created = _json(response, what, trail)
    if not isinstance(created, dict) or chain["key"] not in created:
        _fail(f"{what} returned no {chain['key']!r} field", trail)
    _discard(chain["item"], {**scope, chain["param"]: created[chain["key"]]})
    if _same(created[chain["key"]], gone):
        _fail(f"{what} reused the deleted resource's {chain['key']} {gone!r}", trail)


def run_paging(data: st.DataObject, name: str) -> None:
    """Create ``default + 1`` resources; the list must honour its page-size default and ``limit=1``; then delete them.

    Bodies that collide with existing ones (409) are redrawn; an example that cannot create enough is rejected.
    """
    chain, page = CHAINS[name], CHAINS[name]["page"]
    _step("paging")
    operation = schema[chain["collection"]]["POST"]
    made: list[Any] = []
    trail: list[str] = []
    try:
        for _attempt in range(3 * (page["default"] + 1)):
            if len(made) > page["default"]:
                break
            response = _call(data.draw(_strategy(operation, None)), trail)
            del trail[:-3]  # the last few requests reproduce the state well enough; D + 1 lines would not help
            if response.status_code == 409 or response.status_code in chain["create_refusals"]:
                continue
            _status(response, f"POST {chain['collection']} (a body valid by the spec)", trail)
            body = _json(response, f"POST {chain['collection']}", trail)
            if isinstance(body, dict) and chain["key"] in body:
                made.append(body[chain["key"]])
        if len(made) <= page["default"]:
            reject()
        listing = schema[chain["collection"]]["GET"]
        for query, most in (({}, page["default"]), ({page["param"]: 1}, 1)):
            items = _items(listing.Case(query=query, headers={}), f"GET {chain['collection']} with {query}", trail)
            if len(items) > most:
                told = f"{page['param']}={query[page['param']]}" if query else f"its default {page['param']}"
                _fail(f"GET {chain['collection']} returned {len(items)} items, more than {told} ({most})", trail)
    finally:
        if chain["delete"]:
            for key in made:
                _discard(chain["item"], {chain["param"]: key})


#: Keys at integer boundaries: zero, negative, the int32/uint32 limits, past JavaScript's safe integers, the int64
#: limits (SQLite and most databases store 64-bit integers; a larger key must not reach the driver) and past uint64.
BOUNDARY_KEYS = (0, -1, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 3**63)


def run_unknown_keys(name: str) -> None:
    """Ask the item operations of resource ``name`` (``CHAINS[name]["probes"]``) for keys at integer boundaries.

    Every path parameter gets the same boundary key (:data:`BOUNDARY_KEYS`); whatever the service answers (the item,
    404, a 4xx for a key outside the parameter's range), it must not be a server error: a 5xx here is typically an
    integer overflow in the database driver (a key past 2⁶³ − 1 handed to SQLite) or a cast in the handler.
    """
    chain = CHAINS[name]
    _step("unknown keys")
    for probe in chain["probes"]:
        operation = schema[probe["path"]][probe["method"]]
        for key in BOUNDARY_KEYS:
            trail: list[str] = []
            params = {param.name: key for param in operation.path_parameters}
            response = _call(operation.Case(path_parameters=params, headers={}), trail)
            if response.status_code >= 500:
                _fail(f"{probe['method']} {probe['path']} with the key {key} answered {response.status_code}", trail)
