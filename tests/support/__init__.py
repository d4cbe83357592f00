"""Shared test helpers (imported as ``from support.x import y``)."""
