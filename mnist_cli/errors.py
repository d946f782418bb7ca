"""The exceptions whose message is meant for the person at the terminal, and the exit codes."""

import signal

# Exit codes of the `mnist` command.
EXIT_USAGE = 2  # bad command line, config, checkpoint or data: the message says what to fix
EXIT_FAILED = 1  # one or more jobs of a sweep failed
# Stopped by a signal: 128 + the signal's number, as shells report it (130 Ctrl-C, 143 SIGTERM).
EXIT_INTERRUPTED = 128 + signal.SIGINT


def error_line(message: str) -> str:
    """How the command says what went wrong: one line on stderr."""
    return f"mnist: error: {message}"


class UserError(Exception):
    """Something the user can fix. The message is one line: what is wrong and how to fix it."""


class Interrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after writing a checkpoint."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
