"""Prefect flows and the plain functions they orchestrate."""
