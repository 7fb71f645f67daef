"""Inventory rules, free of HTTP and storage: what the property and docstring tests exercise directly."""

from __future__ import annotations

MAX_QUANTITY = 1_000_000


def value_cents(quantity: int, price_cents: int) -> int:
    """Return the stock value of an item in cents.

    >>> value_cents(3, 250)
    750
    >>> value_cents(0, 999)
    0
    """
    if quantity < 0 or price_cents < 0:
        raise ValueError("quantity and price_cents must be >= 0")
    return quantity * price_cents


def reorder_quantity(stock: int, minimum: int, batch: int) -> int:
    """Return how many units to order so that ``stock`` reaches at least ``minimum``, in whole batches.

    >>> reorder_quantity(stock=3, minimum=10, batch=5)
    10
    >>> reorder_quantity(stock=10, minimum=10, batch=5)
    0
    >>> reorder_quantity(stock=0, minimum=1, batch=4)
    4
    """
    if batch <= 0:
        raise ValueError("batch must be > 0")
    if stock >= minimum:
        return 0
    missing = minimum - stock
    return -(-missing // batch) * batch


def is_low(stock: int, minimum: int) -> bool:
    """Return True when ``stock`` is below ``minimum`` (an item at its minimum is not low).

    >>> is_low(2, 5)
    True
    >>> is_low(5, 5)
    False
    """
    return stock < minimum


def clamp_quantity(quantity: int) -> int:
    """Return ``quantity`` limited to ``0..MAX_QUANTITY``.

    >>> clamp_quantity(-4)
    0
    >>> clamp_quantity(12)
    12
    >>> clamp_quantity(MAX_QUANTITY + 1) == MAX_QUANTITY
    True
    """
    return max(0, min(quantity, MAX_QUANTITY))
