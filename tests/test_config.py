"""Configuration: precedence, several gateways, and a clear error for every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from envoylog.config import DEFAULT_HOST, load_settings, validate_host
from envoylog.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_use_the_user_directories_and_envoy_local(isolated_env: Path) -> None:
    settings = load_settings(environ={})
    assert settings.db_url == f"sqlite:///{isolated_env / '.local/share/envoylog/envoylog.db'}"
    assert [(g.name, g.host) for g in settings.gateways] == [("default", DEFAULT_HOST)]
    assert settings.enlighten_url == "https://enlighten.enphaseenergy.com"
    assert settings.entrez_url == "https://entrez.enphaseenergy.com"
    assert settings.config_path is None


def test_default_config_file_is_read_from_the_user_config_directory(isolated_env: Path) -> None:
    config = isolated_env / ".config" / "envoylog" / "config.toml"
    config.parent.mkdir(parents=True)
    write(config, 'timezone = "Europe/Amsterdam"\nhost = "10.0.0.7"\n')
    settings = load_settings(environ={})
    assert settings.timezone == "Europe/Amsterdam"
    assert settings.gateways[0].host == "10.0.0.7"
    assert settings.config_path == config


def test_command_line_beats_environment_beats_file(tmp_path: Path, isolated_env: Path) -> None:
    config = write(tmp_path / "c.toml", 'db = "sqlite:///from-file.db"\ntimezone = "Asia/Tokyo"\n')
    env = {"ENVOYLOG_CONFIG": str(config), "ENVOYLOG_DB": "sqlite:///from-env.db"}
    assert load_settings(environ=env).db_url == "sqlite:///from-env.db"
    assert load_settings(db="sqlite:///from-cli.db", environ=env).db_url == "sqlite:///from-cli.db"
    assert load_settings(environ={"ENVOYLOG_CONFIG": str(config)}).db_url == "sqlite:///from-file.db"
    assert load_settings(environ=env).timezone == "Asia/Tokyo"
    assert load_settings(environ={**env, "ENVOYLOG_TIMEZONE": "UTC"}).timezone == "UTC"


def test_several_gateways_share_top_level_credentials(tmp_path: Path, isolated_env: Path) -> None:
    config = write(
        tmp_path / "c.toml",
        """
username = "owner@example.com"
password = "secret"

[gateways.home]
host = "envoy.local"

[gateways.barn]
host = "https://envoy-barn.local:8443"
token = "eyJ.a.b"
username = "barn@example.com"
password = "barn-secret"
serial = "122446001637"
""",
    )
    gateways = {g.name: g for g in load_settings(config=config, environ={}).gateways}
    assert set(gateways) == {"home", "barn"}
    assert (gateways["home"].username, gateways["home"].password) == ("owner@example.com", "secret")
    assert (gateways["barn"].username, gateways["barn"].password) == ("barn@example.com", "barn-secret")
    assert gateways["barn"].token == "eyJ.a.b"
    assert gateways["barn"].serial == "122446001637"
    assert gateways["home"].base_urls == ("https://envoy.local", "http://envoy.local")
    assert gateways["barn"].base_urls == ("https://envoy-barn.local:8443",)


def test_environment_describes_the_default_gateway(tmp_path: Path, isolated_env: Path) -> None:
    env = {
        "ENVOYLOG_HOST": "192.168.1.20",
        "ENVOYLOG_USERNAME": "me@example.com",
        "ENVOYLOG_PASSWORD": "pw",
        "ENVOYLOG_TOKEN": "tok",
        "ENVOYLOG_SERIAL": "1234",
    }
    (gateway,) = load_settings(environ=env).gateways
    assert (
        gateway.name,
        gateway.host,
        gateway.username,
        gateway.password,
        gateway.token,
        gateway.serial,
    ) == (
        "default",
        "192.168.1.20",
        "me@example.com",
        "pw",
        "tok",
        "1234",
    )


def test_environment_password_serves_file_gateways_without_their_own(
    tmp_path: Path, isolated_env: Path
) -> None:
    config = write(tmp_path / "c.toml", '[gateways.home]\nhost = "envoy.local"\n')
    env = {"ENVOYLOG_CONFIG": str(config), "ENVOYLOG_USERNAME": "me@example.com", "ENVOYLOG_PASSWORD": "pw"}
    (gateway,) = load_settings(environ=env).gateways
    assert (gateway.name, gateway.username, gateway.password) == ("home", "me@example.com", "pw")


def test_secrets_stay_out_of_repr(isolated_env: Path) -> None:
    settings = load_settings(
        environ={
            "ENVOYLOG_PASSWORD": "hunter2-secret",
            "ENVOYLOG_TOKEN": "eyJtoken-secret",
            "ENVOYLOG_DB": "postgresql+psycopg://u:dbpass-secret@localhost/x",
        }
    )
    text = repr(settings)
    for secret in ("hunter2-secret", "eyJtoken-secret", "dbpass-secret"):
        assert secret not in text


def test_plain_postgresql_url_means_psycopg(isolated_env: Path) -> None:
    settings = load_settings(db="postgresql://logger@db.example/solar", environ={})
    assert settings.db_url == "postgresql+psycopg://logger@db.example/solar"


@pytest.mark.parametrize(
    "host",
    [
        "envoy.local",
        "envoy.local:8443",
        "192.168.1.20",
        "https://192.168.1.20",
        "http://envoy:80",
        "http://[::1]:8080",
    ],
)
def test_good_hosts_are_accepted(host: str) -> None:
    assert validate_host(host) == host


@pytest.mark.parametrize(
    "host",
    ["", "bad host", "ftp://envoy", "https://", "envoy:0", "envoy:99999", "envoy:port", "https://e/x", "a_b"],
)
def test_bad_hosts_are_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="bad gateway host"):
        validate_host(host)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"ENVOYLOG_HOST": "not a host"}, "bad gateway host"),
        ({"ENVOYLOG_DB": "not a url"}, "bad database URL"),
        ({"ENVOYLOG_DB": "mysql://u@h/db"}, "unsupported database 'mysql'"),
        ({"ENVOYLOG_DB": "postgresql+asyncpg://u@h/db"}, "psycopg"),
        ({"ENVOYLOG_DB": "sqlite://"}, "needs a file"),
        ({"ENVOYLOG_TIMEZONE": "Mars/Olympus"}, "unknown time zone"),
        ({"ENVOYLOG_ENTREZ_URL": "entrez"}, "bad entrez_url"),
        ({"ENVOYLOG_CONFIG": "/nonexistent/envoylog.toml"}, "does not exist"),
    ],
)
def test_bad_environment_values_are_one_clear_error(
    variables: dict[str, str], message: str, isolated_env: Path
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(environ=variables)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("db = \n", "not valid TOML"),
        ('hots = "envoy.local"\n', "unknown key 'hots'"),
        ('[gateways.home]\nhost = "x"\npasword = "p"\n', r"unknown key 'pasword' in \[gateways.home\]"),
        ("gateways = 3\n", "must be a table"),
        ("timezone = 5\n", "must be a string"),
        ('[gateways.home]\nhost = "bad host"\n', "bad gateway host"),
        ('[gateways.home]\nfingerprint = "abc"\n', "bad fingerprint"),
    ],
)
def test_bad_config_files_are_one_clear_error(
    text: str, message: str, tmp_path: Path, isolated_env: Path
) -> None:
    config = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(config=config, environ={})
    assert "\n" not in str(info.value)


def test_unreadable_config_file_is_a_clear_error(tmp_path: Path, isolated_env: Path) -> None:
    not_text = tmp_path / "c.toml"
    not_text.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(config=not_text, environ={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(config=tmp_path, environ={})  # a directory


def test_single_gateway_keys_at_top_level_cannot_mix_with_tables(tmp_path: Path, isolated_env: Path) -> None:
    config = write(tmp_path / "c.toml", 'host = "a.local"\n[gateways.home]\nhost = "b.local"\n')
    with pytest.raises(ConfigError, match="move it into a table"):
        load_settings(config=config, environ={})
