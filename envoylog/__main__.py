"""`python -m envoylog` runs the command-line interface."""

from envoylog.cli import main

main()
