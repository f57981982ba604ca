from __future__ import annotations

from pathlib import Path

import pytest

from kongctl.config import config_dir, env_var_name, load_settings
from kongctl.errors import ConfigError


def test_config_dir_follows_xdg_config_home() -> None:
    assert config_dir({"XDG_CONFIG_HOME": "/x/y"}) == Path("/x/y/kongctl")


def test_empty_xdg_config_home_falls_back_to_dot_config() -> None:
    assert config_dir({"XDG_CONFIG_HOME": "  "}) == Path.home() / ".config" / "kongctl"


@pytest.mark.parametrize(
    ("profile", "key", "expected"),
    [
        ("default", "konnect.pat", "KONGCTL_DEFAULT_KONNECT_PAT"),
        ("dev-eu", "konnect.base-url", "KONGCTL_DEV_EU_KONNECT_BASE_URL"),
        ("prod", "log-level", "KONGCTL_PROD_LOG_LEVEL"),
    ],
)
def test_env_var_names_upper_case_with_underscores(profile: str, key: str, expected: str) -> None:
    assert env_var_name(profile, key) == expected


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_precedence_is_flag_then_env_then_file_then_default(tmp_path: Path) -> None:
    path = write(tmp_path, "default:\n  konnect:\n    pat: from-file\n    region: eu\n")
    env = {"KONGCTL_DEFAULT_KONNECT_PAT": "from-env"}
    settings = load_settings("default", config_file=path, environ=env)
    assert settings.get("konnect.pat", "from-flag") == "from-flag"
    assert settings.get("konnect.pat") == "from-env"
    assert settings.get("konnect.region") == "eu"
    assert settings.get("output", None, "text") == "text"


def test_flat_dotted_keys_are_read_like_nested_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "default:\n  konnect.pat: flat\n")
    assert load_settings("default", config_file=path, environ={}).get("konnect.pat") == "flat"


def test_profiles_are_separate(tmp_path: Path) -> None:
    path = write(tmp_path, "default:\n  output: json\nother:\n  output: yaml\n")
    assert load_settings("other", config_file=path, environ={}).get("output") == "yaml"


def test_missing_named_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings("default", config_file=tmp_path / "nope.yaml", environ={})


def test_missing_default_config_file_is_empty(tmp_path: Path) -> None:
    settings = load_settings("default", directory=tmp_path, environ={})
    assert settings.get("konnect.pat") is None


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "default:\n  konnect:\n    pat: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        load_settings("default", config_file=path, environ={})
    assert str(path) in caught.value.message
    assert "line 4" in caught.value.message


def test_top_level_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="profile names"):
        load_settings("default", config_file=write(tmp_path, "- a\n- b\n"), environ={})
