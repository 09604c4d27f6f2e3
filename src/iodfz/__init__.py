"""iodfz: lossless compression with integer-only discrete flows (images) and zstd (everything else)."""

__version__ = "0.1.0"
