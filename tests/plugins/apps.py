"""Shared pytest fixtures: apps."""
