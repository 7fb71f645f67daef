"""``pilotage market``: credit balances, the load-test slot, recent auctions and the earning table (from the log).

Bidder accounts of the load-test slot are per service (``performance/<service>``, docs/architecture.md
"Coordination"); they are listed once they earned, paid or bid, with a zero balance when they have nothing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from pilotage.cli import JsonOpt, app, cli_settings, console
from pilotage.coordination.market import market_report

__all__ = ["market"]


async def _ledger(url: str) -> tuple[Any, Any]:
    from pilotage.coordination.market import Ledger
    from pilotage.coordination.slot import LOADTEST_SLOT, SlotView
    from pilotage.registry import backend_class

    bus = backend_class("bus", url)(url)
    async with bus:
        return await Ledger.load(bus), await SlotView(bus, LOADTEST_SLOT).refresh()


@app.command()
def market(
    limit: Annotated[int, typer.Option(help="How many of the newest auctions to show.")] = 10,
    bus: Annotated[str | None, typer.Option("--bus", help="Bus URL (default: the bus_url setting).")] = None,
    json_mode: JsonOpt = False,
) -> None:
    """Show every account's credits, who holds the load-test slot, the newest auctions and how credits are earned."""
    from pilotage.cli.events import _event_log_exists

    settings = cli_settings()
    if bus is not None:
        settings = settings.model_copy(update={"bus_url": bus})
    _event_log_exists(settings)
    ledger, view = asyncio.run(_ledger(settings.bus_url))
    report = market_report(ledger, limit, view)
    if json_mode:
        console.print_json(json.dumps(report))
        return
    console.print("[bold]Balances[/] (credits: earned by outcomes, paid in auctions)")
    if not report["balances"]:
        console.print("  nobody has earned credits yet")
    for row in report["balances"]:
        console.print(
            f"  {row['agent']:<24} {row['balance']:>6}   earned {row['earned']:>5}  paid {row['paid']:>5}", markup=False
        )
    slot = report["slot"]
    holder = slot["holder"]
    held = f"held by {holder['agent']} for {holder.get('request', '?')}" if holder else "free"
    console.print(
        "[bold]Load-test slot[/] "
        + escape(
            f"({slot['resource']}): {held}; waiting: {', '.join(slot['waiting']) or '-'}; "
            f"{slot['auctions']} auction(s) so far"
        )
    )
    console.print(f"[bold]Recent auctions[/] ({len(report['auctions'])} shown)")
    for auction in report["auctions"]:
        winners = ", ".join(
            f"{w['agent']}{' for ' + w['request'] if w.get('request') else ''} pays {w['price']} ({w['via']})"
            for w in auction.get("winners") or []
        )
        console.print(
            f"  {str(auction.get('auction_id'))[:12]} {auction.get('resource')} x{auction.get('units')}: "
            f"{winners or 'no sale'}; lost: {', '.join(auction.get('losers') or []) or '-'} "
            f"(decision {auction.get('decision_id')})",
            markup=False,
        )
    console.print("[bold]Earning table[/]")
    for rule in report["earnings"]:
        console.print(
            f"  {rule['credits']:>3}  {rule['agent']:<12} {rule['event_type']}: {rule['outcome']}", markup=False
        )
