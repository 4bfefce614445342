"""Kairos feature layer: data contract, ingestion and quarantine, identity resolution, feature
definitions, snapshots and stores. Imports neither FastAPI nor MLflow."""
