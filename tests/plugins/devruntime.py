"""Shared pytest fixtures: devruntime."""
