"""Kairos FastAPI service: app factory, lifespan, routers. Loads registered bundles."""
