"""Training-side (torch) definition of the integer discrete flow.

The integer engine in :mod:`iodfz.engine` runs the exported model; this package only trains it.
The integer semantics the training emulates are defined in docs/INTEGER.md.
"""
