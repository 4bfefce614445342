"""Recommenders: bought together, personal, similar items, buy again, popular. One small interface
(:mod:`models.recs.base`), artifacts as NumPy / Parquet / JSON, never pickle."""
