"""bus layer of Pilotage; see docs/architecture.md."""
