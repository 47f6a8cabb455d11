"""Errors the user must act on: one line, exit status 2, never a traceback."""

from __future__ import annotations

import click

__all__ = ["InputError"]


class InputError(click.ClickException):
    """Unreadable or invalid input (which file, which record, what is wrong)."""

    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(f"tlswatch: error: {self.format_message()}", err=True)
