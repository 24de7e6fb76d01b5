"""Errors that mean "the user's input is wrong": the CLI prints one line and exits 2.

Example:
    >>> try:
    ...     raise UserInputError("--trials: must be a positive integer, got 0")
    ... except ValueError as err:
    ...     print(err)
    --trials: must be a positive integer, got 0
"""

from __future__ import annotations


class UserInputError(ValueError):
    """Bad input from the user; the message is one line naming the field and the fix."""
