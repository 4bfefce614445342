"""Kairos estimators and recommenders: pure computation, no I/O, no MLflow."""
