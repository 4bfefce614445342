"""Feature definitions by family, each a module exposing ``GROUPS``; :mod:`features.definitions` assembles them."""
