"""`python -m sluice` runs the CLI."""

from sluice.cli.main import main

main()
