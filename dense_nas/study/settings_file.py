"""Search settings in a YAML file: ``dense-nas search --config`` and ``--print-config``.

The file's keys are the :class:`~dense_nas.study.settings.SearchSettings` field names
(the keywords of :func:`~dense_nas.study.search`); each value reads as its flag's text
would, so a file and a command line mean the same. What :func:`settings_yaml` writes,
:func:`read_settings_file` reads back to the same settings.

Example:
    >>> import tempfile
    >>> from dense_nas.study.settings import SearchSettings
    >>> print(settings_yaml(SearchSettings(n_trials=4)).splitlines()[6])
    n_trials: 4
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder, "study.yaml")
    ...     _ = path.write_text(settings_yaml(SearchSettings(n_trials=4, seed=7)))
    ...     again = SearchSettings(**read_settings_file(path))
    ...     _ = path.write_text("trials: 4\\n")
    ...     read_settings_file(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dense_nas.errors.UserInputError: .../study.yaml: trials: not a search option; did you mean n_trials? ...
    >>> again == SearchSettings(n_trials=4, seed=7)
    True
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from dense_nas.errors import UserInputError
from dense_nas.space._file import read_yaml_file
from dense_nas.space._values import Where, show
from dense_nas.study.settings import OPTIONS, Option, SearchSettings


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """The options a settings file gives, as :class:`SearchSettings` keywords.

    Raises:
        UserInputError: the file cannot be read, is not a mapping, or names an unknown
            option or a value its option cannot take (one line naming the key).
    """
    where = Where(str(path))
    data = read_yaml_file(Path(path))
    if data is None:  # an empty file: every option at its default
        return {}
    if not isinstance(data, dict):
        raise where.error(
            f"must be a mapping of option names to values, got {show(data)}; "
            "see `dense-nas search --print-config`"
        )
    options = {}
    for key, value in data.items():
        option = OPTIONS.get(key) if isinstance(key, str) else None
        if option is None:
            close = difflib.get_close_matches(str(key), OPTIONS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise where.at(str(key)).error(
                f"not a search option; {hint}the keys are search()'s keywords, as "
                "`dense-nas search --print-config` writes them"
            )
        options[key] = _read(option, value, where.at(key))
    return options


def _read(option: Option, value: Any, where: Where) -> Any:
    """A file's value for ``option``, read as its flag would read the same text."""
    if value is None:
        if option.default is None:
            return None
        raise where.error(
            f"needs a value; leave the key out for the default ({option.shown_default})"
        )
    if option.repeated:
        if not isinstance(value, Mapping):
            raise where.error(f"must be a mapping of keyword arguments, got {show(value)}")
        return dict(value)
    if option.read is None:
        if not isinstance(value, bool):
            raise where.error(f"must be true or false, got {show(value)}")
        return value
    if isinstance(value, bool):  # YAML reads on, off, yes and no as booleans
        raise where.error(f"must be a value, not {show(value)}; quote a word such as 'on'")
    if not isinstance(value, (str, int, float)):
        raise where.error(f"must be a single value, got {show(value)}")
    try:
        return option.read(str(value))
    except UserInputError as err:
        raise where.error(err.message) from None


def settings_yaml(settings: SearchSettings) -> str:
    """Every option of ``settings`` as a settings file, in the fields' order.

    Raises:
        UserInputError: an option holds what a file cannot (in Python: a ``SearchSpace``
            object, or a trainer config given as a dict).
    """
    values = {name: _plain(option, getattr(settings, name)) for name, option in OPTIONS.items()}
    header = "# dense-nas search settings; run them with: dense-nas search --config FILE\n"
    return header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True)


def _plain(option: Option, value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if option.repeated and isinstance(value, Mapping):
        return dict(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise UserInputError(
        f"{type(value).__name__} has no spelling in a settings file; give it by name or path",
        param=option.name,
    )
