"""Kairos jobs: build datasets at cutoffs, fit, evaluate against baselines, log and register in MLflow."""
