"""Shared pytest fixtures: services."""
