"""``python -m pilotage``: the same as the ``pilotage`` console script."""

from pilotage.cli import main

main()
