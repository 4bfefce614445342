"""Decisioning: send time, channel preference, contact policy and next-best-offer."""
