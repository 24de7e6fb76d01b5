"""The built-in search spaces, one YAML file each, installed as ``dense_nas.search_spaces``.

The format is described in ``README.md`` beside this file. The files are data: they are
read with :mod:`importlib.resources` by :func:`dense_nas.space.load_space` and listed by
:func:`dense_nas.space.list_spaces`.

Example:
    >>> from importlib.resources import files
    >>> files("dense_nas.search_spaces").joinpath("digits-tiny.yaml").is_file()
    True
"""
