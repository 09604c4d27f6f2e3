"""``python -m iodfz``: same as the ``iodfz`` command."""

from iodfz.cli import main

if __name__ == "__main__":
    main()
