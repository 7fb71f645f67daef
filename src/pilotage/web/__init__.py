"""web layer of Pilotage; see docs/architecture.md."""
