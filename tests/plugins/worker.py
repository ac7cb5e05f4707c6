"""Shared pytest fixtures: worker."""
