"""The control plane's HTTP API (``/api/v1``, served by ``pilotage serve``); see docs/architecture.md "HTTP API"."""
