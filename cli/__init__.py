"""The ``kairos`` command (:mod:`cli.main`): one entry point for every package's jobs."""
