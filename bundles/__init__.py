"""Model artifacts and the registry, shared by training (which writes) and serving (which reads).

One module per kind of model, each with one bundle class that writes, reads, verifies and builds the
object that predicts; :mod:`bundles.registry` is the MLflow side (log, register, promote, fetch with
checksums). Imports neither FastAPI nor the training jobs.
"""
