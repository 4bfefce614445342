"""Batch answers for campaign engines: the nightly full-base score export and compiling its models."""
