"""Shared pytest fixtures: http."""
