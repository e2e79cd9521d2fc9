"""Shared test configuration: fixtures live in :mod:`shared.testing`."""

pytest_plugins = ["shared.testing"]
