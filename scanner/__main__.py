"""`python -m scanner` = the `dfscan` command, for a source tree that was not pip-installed."""

from scanner.cli import main

main(prog_name="dfscan")
