"""The one exception type whose message is meant for the person at the terminal."""

# Exit codes of the `mnist` command.
EXIT_USAGE = 2  # bad command line, config, checkpoint or data: the message says what to fix
EXIT_FAILED = 1  # one or more jobs of a sweep failed
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it


class UserError(Exception):
    """Something the user can fix. The message is one line: what is wrong and how to fix it."""
