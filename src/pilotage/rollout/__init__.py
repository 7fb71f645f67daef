"""Rollouts: the engine (canary steps, blue-green, fast rollback, watch, standby), its analysis and incidents."""
