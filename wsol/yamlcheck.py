"""Checks on YAML text before anything is built from it (no torch import: the command line runs
them first, so a hostile file is refused at once)."""

from __future__ import annotations

from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A config with unknown keys or bad values: one line per problem, each naming the key."""


#: the largest config or search-space file read (bytes): a recipe is a few kilobytes
MAX_YAML_BYTES = 1 << 20


def check_plain_yaml(text: str, where: str) -> None:
    """Refuse, before building anything, YAML that a config has no use for and an attacker does:
    aliases (``*name``: a few lines of nested aliases expand to billions of values, the "billion
    laughs") and files over ``MAX_YAML_BYTES``. Raises :class:`ConfigError` with the line."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(
            f"{where}: {len(text):,} bytes is too large for a config (at most {MAX_YAML_BYTES:,})"
        )
    try:
        for event in yaml.parse(text):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark is not None else "?"
                raise ConfigError(
                    f"{where}:{line}: YAML aliases (*{event.anchor}) are not allowed in a config: "
                    "write the value out"
                )
    except yaml.YAMLError:
        return  # the loader reports the syntax error with its line


def check_plain_yaml_file(path: str | Path) -> None:
    """:func:`check_plain_yaml` of a file, if it is one (a missing file is reported later)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size <= MAX_YAML_BYTES:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            return
        check_plain_yaml(text, str(path))
    elif path.is_file():
        raise ConfigError(
            f"{path}: {path.stat().st_size:,} bytes is too large for a config (at most "
            f"{MAX_YAML_BYTES:,})"
        )
