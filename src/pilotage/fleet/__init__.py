"""Services Pilotage manages: the descriptor (pilotage.yaml), the registry of services, their production versions."""
