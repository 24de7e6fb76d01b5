"""Errors that mean "the user's input is wrong": the CLI prints one line and exits 2.

An error about one parameter carries its Python name; Python shows that name, and the
command line shows the flag that sets it (:func:`cli_message`).

Example:
    >>> err = UserInputError("must be a positive integer, got 0", param="n_trials")
    >>> print(err)
    n_trials: must be a positive integer, got 0
    >>> cli_message(err)
    '--trials: must be a positive integer, got 0'
    >>> print(UserInputError("space 'x': not found"))
    space 'x': not found
"""

from __future__ import annotations

from collections.abc import Sequence

FLAGS = {
    "n_trials": "--trials",
    "study_name": "--study",
    "trial": "--trial",
    "data_args": "--data-arg",
    "sampler_args": "--sampler-arg",
    "pruner_args": "--pruner-arg",
}
"""Python parameter names whose command-line flag is not ``--`` + the name with dashes."""


class UserInputError(ValueError):
    """Bad input from the user; the message is one line naming the field and the fix.

    Args:
        message: what is wrong and how to fix it.
        param: the Python parameter the error is about (``None``: a file's field or
            something else the message names itself).
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.message = message
        self.param = param
        super().__init__(f"{param}: {message}" if param else message)


def check_choice(value: str, choices: Sequence[str], param: str) -> None:
    """Refuse ``value`` for ``param`` unless it is one of ``choices``, naming them.

    Example:
        >>> check_choice("onnx", ("onnx", "torchscript"), "format")
        >>> check_choice("tflite", ("onnx", "torchscript"), "format")
        Traceback (most recent call last):
        ...
        dense_nas.errors.UserInputError: format: must be one of onnx, torchscript, got 'tflite'
    """
    if value not in choices:
        raise UserInputError(f"must be one of {', '.join(choices)}, got {value!r}", param=param)


def flag(param: str) -> str:
    """The command-line flag of a Python parameter.

    Example:
        >>> flag("data_dir"), flag("n_trials")
        ('--data-dir', '--trials')
    """
    return FLAGS.get(param, "--" + param.replace("_", "-"))


def cli_message(err: UserInputError) -> str:
    """The error as the command line says it: the parameter as its flag."""
    return f"{flag(err.param)}: {err.message}" if err.param else err.message


class StorageError(RuntimeError):
    """The study's storage could not be written (a full disk, a lost database server).

    Not the user's input, so the CLI prints its one line and exits 1, not 2.

    Example:
        >>> print(StorageError("cannot write to sqlite:///s.db: database or disk is full"))
        cannot write to sqlite:///s.db: database or disk is full
    """
