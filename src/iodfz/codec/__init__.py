"""The neural image path: pixels ↔ rANS streams (`pixels`), files ↔ containers (`image`)."""
