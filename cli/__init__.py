"""carl_studio.cli: the `carl` command line (typer + rich) over carl_studio.tools."""
