"""One exception type for problems a user can fix, so the CLI and the node can report them in one sentence."""


class SlimsegError(Exception):
    """A user-facing error: the message names the file or value and says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} ({self.hint})" if self.hint else base
