"""The change-request grammar: accepted forms, derived names, and refusals that show the grammar."""

from __future__ import annotations

import time

import pytest

from pilotage.errors import InputError
from pilotage.spec.grammar import GRAMMAR, parse_request, pluralize, singularize


def test_demo_request() -> None:
    req = parse_request("Add discount code support with fields code:string, percent:integer")
    assert req.resource == "DiscountCode"
    assert req.slug == "discount-code"
    assert req.collection_path == "/discount-codes"
    assert req.item_path == "/discount-codes/{id}"
    assert req.fields == {"code": "string", "percent": "integer"}
    assert req.required == ["code", "percent"]


def test_case_and_trailing_period() -> None:
    req = parse_request("ADD Gift Box SUPPORT WITH FIELDS label:STRING.")
    assert (req.kind, req.resource, req.collection_path) == ("resource", "GiftBox", "/gift-boxes")
    assert req.fields == {"label": "string"}


def test_a_new_resource_without_fields_is_refused_not_invented() -> None:
    """Issue #18: without fields the resource got an invented ``name:string``."""
    with pytest.raises(InputError) as info:
        parse_request("ADD Gift Box SUPPORT.")
    assert "names its fields" in str(info.value)
    assert info.value.context["closest"] == "Add Gift Box support with fields NAME:TYPE, ..."


@pytest.mark.parametrize(
    ("text", "fields", "required"),
    [
        ("add coupon with code:string and amount:number?", {"code": "string", "amount": "number"}, ["code"]),
        (
            "add coupon with fields active:bool, starts:date-time",
            {"active": "boolean", "starts": "date-time"},
            ["active", "starts"],
        ),
        ("add coupon resource with field day:date", {"day": "date"}, ["day"]),
    ],
)
def test_field_forms(text: str, fields: dict[str, str], required: list[str]) -> None:
    req = parse_request(text)
    assert req.fields == fields and req.required == required


def test_plural_input_is_singularised() -> None:
    assert parse_request("add cities with fields name:string").resource == "City"
    assert parse_request("add boxes with fields size:integer").collection_path == "/boxes"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("make it faster please", "must start with 'add'"),
        ("add support", "no resource name"),
        ("add coupon with fields code", "not NAME:TYPE"),
        ("add coupon with fields code:money", "unknown type 'money'"),
        ("add coupon with fields id:integer", "reserved"),
        ("add coupon with fields a:string, a:integer", "appears twice"),
        ("", "must start with 'add'"),
    ],
)
def test_refusals_show_the_grammar(text: str, why: str) -> None:
    with pytest.raises(InputError) as info:
        parse_request(text)
    line = info.value.one_line()
    assert why in line
    assert GRAMMAR in line
    assert "\n" not in line


def test_english_rules() -> None:
    assert [pluralize(w) for w in ("code", "box", "city", "day", "match")] == [
        "codes",
        "boxes",
        "cities",
        "days",
        "matches",
    ]
    assert [singularize(w) for w in ("codes", "boxes", "cities", "status", "class")] == [
        "code",
        "box",
        "city",
        "status",
        "class",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "add a" + " " * 20_000 + "!",  # cubic backtracking of the old single expression: minutes
        "add a" + " with" * 4_000 + " !",
        "add " + "a b " * 5_000 + "!",
        "add x with " + "f:string, " * 5_000 + "g:strin",
    ],
)
def test_long_hostile_requests_are_refused_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(InputError, match="not understood"):
        parse_request(text)
    # a bound two orders of magnitude above the measured time (milliseconds), far below the old behaviour
    assert time.perf_counter() - started < 2.0
