"""runtime layer of Pilotage; see docs/architecture.md."""
