"""Brokers: the contract (``base``), the embedded paper broker (``paper``) and, later, IBKR."""
