"""The one exception type of iodfz.

Every failure to read or write a container — damage, truncation, an unknown version or codec,
an input that changed while it was read — is an :class:`IodfError` whose message is a short,
user-facing sentence. The CLI prints it as ``iodfz: FILE: message`` without a traceback.
"""


class IodfError(Exception):
    """A user-facing error; ``str(err)`` is a one-line reason."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
