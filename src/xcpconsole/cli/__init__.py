"""Command-line interface: a thin layer of Typer commands over the library API."""
