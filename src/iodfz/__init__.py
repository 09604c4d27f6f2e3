"""iodfz: lossless compression — integer-only discrete flows for images, zstd for the rest."""

__version__ = "0.1.0"
