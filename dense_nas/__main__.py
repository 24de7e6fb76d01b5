"""``python -m dense_nas`` runs the ``dense-nas`` command."""

from dense_nas.cli import command

command()
