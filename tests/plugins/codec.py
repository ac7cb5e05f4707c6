"""Shared pytest fixtures: codec."""
