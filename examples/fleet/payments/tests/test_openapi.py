"""openapi.yaml is written by hand: it must name exactly the operations the app serves."""

from __future__ import annotations

from pathlib import Path

import yaml
from starlette.routing import Route

from app.main import app

DOCUMENT = Path(__file__).resolve().parent.parent / "openapi.yaml"
METHODS = {"get", "post", "put", "patch", "delete"}


def test_openapi_yaml_matches_the_routes() -> None:
    doc = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    documented = {(m.upper(), path) for path, item in doc["paths"].items() for m in item if m in METHODS}
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and route.include_in_schema
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert documented == served
