"""Tests of the loopback TWS test gateway (workbench/testing)."""
