"""The coder's error class."""


class CoderError(ValueError):
    """A rANS stream or table is invalid (truncated, corrupted, or inconsistent)."""
