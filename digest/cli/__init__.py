"""The `digest` admin command (click): ``group`` holds the command group and its error
handling, ``commands/`` one module per noun, ``demo`` the bundled demo day."""

from digest.cli.group import cli, main

__all__ = ["cli", "main"]
