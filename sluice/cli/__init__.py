"""The `sluice` command, one module per group of commands; `sluice.cli.main` assembles them."""
