"""Configuration: the config directory, profiles in config.yaml, environment and precedence.

The file is compatible with the Go kongctl's: top-level keys are profile names, and each
profile holds nested keys such as ``konnect.pat`` (``konnect: {pat: ...}``). A value is taken
from, in order: a command-line flag, ``KONGCTL_<PROFILE>_<KEY>`` in the environment, the
profile in the config file, the built-in default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from kongctl.errors import ConfigError

# typing.TYPE_CHECKING without importing typing, which `kongctl ps` would pay for at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CONFIG_FILE_NAME = "config.yaml"
_ENV_UNSAFE = re.compile(r"[.\-]")


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/kongctl`` when that is set and non-empty, else ``~/.config/kongctl``."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CONFIG_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "kongctl"


def env_var_name(profile: str, key: str) -> str:
    """The environment variable for ``key`` in ``profile``: KONGCTL_DEFAULT_KONNECT_PAT."""
    return "KONGCTL_" + _ENV_UNSAFE.sub("_", f"{profile}_{key}").upper()


def load_config_file(path: Path, *, required: bool) -> dict[str, Any]:
    """Read config.yaml; a missing file is empty unless the user named it explicitly."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"config file {path} does not exist") from None
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    return _parse_yaml(path, text)


def _parse_yaml(path: Path, text: str) -> dict[str, Any]:
    import yaml  # deferred: only commands that read a config file pay for it

    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"malformed YAML in {path}:{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML in {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must map profile names to settings")
    return data


def _lookup(tree: Mapping[str, Any], key: str) -> Any:
    """Find ``a.b`` as nested mappings or as a flat dotted key."""
    if key in tree:
        return tree[key]
    head, _, rest = key.partition(".")
    if rest and isinstance(tree.get(head), Mapping):
        return _lookup(tree[head], rest)
    return None


class Settings:
    """The resolved settings of one profile; flags are passed in at lookup time."""

    # A plain class, not a dataclass: `kongctl ps` reads its output format from here, and
    # importing dataclasses would be a good part of its start-up time.
    def __init__(
        self,
        profile: str,
        file_path: Path,
        file_data: Mapping[str, Any],
        environ: Mapping[str, str],
    ) -> None:
        self.profile = profile
        self.file_path = file_path
        self.file_data = file_data
        self.environ = environ

    @property
    def profile_data(self) -> Mapping[str, Any]:
        data = self.file_data.get(self.profile)
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"profile {self.profile!r} in {self.file_path} must be a mapping")
        return data

    def get(self, key: str, flag: Any = None, default: Any = None) -> Any:
        """flag > environment > config file > default."""
        if flag is not None:
            return flag
        env_value = self.environ.get(env_var_name(self.profile, key))
        if env_value is not None and env_value != "":
            return env_value
        file_value = _lookup(self.profile_data, key)
        if file_value is not None:
            return file_value
        return default

    def source_of(self, key: str, flag: Any = None) -> str:
        """Where ``key`` comes from, for messages: flag, env, file or default."""
        if flag is not None:
            return "flag"
        if self.environ.get(env_var_name(self.profile, key)):
            return "env"
        if _lookup(self.profile_data, key) is not None:
            return "file"
        return "default"


def load_settings(
    profile: str,
    *,
    config_file: Path | None = None,
    directory: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings for ``profile`` from the named or default config file and the environment."""
    env = dict(os.environ if environ is None else environ)
    path = config_file or (directory or config_dir(env)) / CONFIG_FILE_NAME
    data = load_config_file(path, required=config_file is not None)
    return Settings(profile=profile, file_path=path, file_data=data, environ=env)


def parse_bool(value: Any, *, name: str) -> bool:
    """Booleans from YAML or environment strings."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")
