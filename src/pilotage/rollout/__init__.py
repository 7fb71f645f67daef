"""Rollouts: the one controller (state from events, next_action, the runtime actions), analysis and incidents."""
