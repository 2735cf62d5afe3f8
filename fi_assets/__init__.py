"""Dagster definitions of the FineInstructions pipeline (assets, checks, automation)."""
