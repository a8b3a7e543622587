"""The workbench: propose, simulate, gate, approve with a one-time token, then submit."""

__version__ = "0.1.0"
