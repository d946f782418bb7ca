"""`python -m mnist_cli ...` is the same as `mnist ...`."""

from mnist_cli.cli import main

if __name__ == "__main__":
    main()
