"""The `nestdsl` command-line interface (Typer)."""
