"""The FastAPI service: /retrieve, health, readiness."""
