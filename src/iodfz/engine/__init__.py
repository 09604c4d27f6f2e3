"""Integer engine: the exported model file, the flow, and its backends (docs/INTEGER.md)."""
