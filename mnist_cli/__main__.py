"""`python -m mnist_cli ...` is the same as `mnist ...`."""

from mnist_cli.cli import command

if __name__ == "__main__":
    command()
