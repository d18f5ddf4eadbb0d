"""Config layering and the one-line errors of DESIGN.md section 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return str(path)


def test_defaults_match_design() -> None:
    config = load_config(environ={})
    assert (config.mqtt_port, config.ws_port, config.amqp_port, config.http_port) == (
        1883,
        15675,
        5672,
        15672,
    )
    assert (config.mqtts_port, config.amqps_port) == (8883, 5671)
    assert config.bind == "0.0.0.0"
    assert config.data_dir == "./data"
    assert not config.tls_enabled
    assert config.mqtt.max_packet_size == 1024 * 1024
    assert config.mqtt.exchange == "amq.topic"


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt_port = 1000\namqp_port = 2000\nhttp_port = 3000\n")
    env = {"GATEWAY_AMQP_PORT": "2001", "GATEWAY_HTTP_PORT": "3001"}
    config = load_config(path, environ=env, overrides={"http_port": 3002, "bind": None})
    assert (config.mqtt_port, config.amqp_port, config.http_port) == (1000, 2001, 3002)
    assert config.bind == "0.0.0.0"  # None means "not given on the command line"


def test_config_file_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'log_level = "debug"\n')
    assert load_config(environ={"GATEWAY_CONFIG": path}).log_level == "debug"


def test_nested_sections(tmp_path: Path) -> None:
    path = write(tmp_path, '[mqtt]\nmax_packet_size = 2048\ntopic_mode = "rabbitmq"\n')
    config = load_config(path, environ={})
    assert config.mqtt.max_packet_size == 2048
    assert config.mqtt.topic_mode == "rabbitmq"


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt_port = = 3\n")
    with pytest.raises(ConfigError, match=r"gateway\.toml: not valid TOML"):
        load_config(path, environ={})


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "mqtt_prot = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"{path}: key mqtt_prot: unknown key (not a gateway setting)"


def test_missing_required_key_names_its_place(tmp_path: Path) -> None:
    path = write(tmp_path, '[[users]]\nname = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"{path}: key users[0].password_hash: required key missing"


def test_unknown_nested_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[mqtt]\nmax_pakcet_size = 1\n")
    with pytest.raises(ConfigError, match=r"key mqtt\.max_pakcet_size: unknown key"):
        load_config(path, environ={})


def test_wrong_type_names_key_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, '[mqtt]\nmax_packet_size = "big"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == f"{path}: key mqtt.max_packet_size: expected `int`, got `str`"


def test_bad_enum_value(tmp_path: Path) -> None:
    path = write(tmp_path, 'log_level = "loud"\n')
    with pytest.raises(ConfigError, match=r"key log_level: expected one of"):
        load_config(path, environ={})


def test_port_range_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "amqp_port = 70000\n")
    with pytest.raises(ConfigError, match=r"key amqp_port: expected a port from 0 to 65535"):
        load_config(path, environ={})


def test_bad_env_port() -> None:
    with pytest.raises(ConfigError, match=r"GATEWAY_MQTT_PORT: expected an integer port"):
        load_config(environ={"GATEWAY_MQTT_PORT": "abc"})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(str(tmp_path / "nope.toml"), environ={})


def test_users_need_a_real_hash(tmp_path: Path) -> None:
    path = write(tmp_path, '[[users]]\nname = "alice"\npassword_hash = "secret"\n')
    with pytest.raises(ConfigError, match=r"key users\[0\]\.password_hash: expected a hash"):
        load_config(path, environ={})


def test_tls_needs_both_files(tmp_path: Path) -> None:
    path = write(tmp_path, '[tls]\ncertfile = "c.pem"\n')
    with pytest.raises(ConfigError, match="expected both certfile and keyfile"):
        load_config(path, environ={})


def test_disable_and_any_port() -> None:
    config = load_config(environ={}, overrides={"mqtt_port": -1, "amqp_port": 0})
    assert (config.mqtt_port, config.amqp_port) == (-1, 0)


def test_every_mqtt_and_amqp_key_reaches_the_adapters(tmp_path: Path) -> None:
    from gateway.app import Gateway

    path = write(
        tmp_path,
        '[mqtt]\nmax_inflight = 7\ntopic_mode = "rabbitmq"\nretained_max_count = 9\n'
        "[amqp]\nheartbeat = 5\nframe_max = 8192\n",
    )
    gateway = Gateway(load_config(path, environ={}))
    settings = gateway.mqtt.settings
    assert (settings.max_inflight, settings.topic_mode, settings.retained_max_count) == (
        7,
        "rabbitmq",
        9,
    )
    assert (gateway.amqp.settings.heartbeat, gateway.amqp.settings.frame_max) == (5, 8192)
    assert gateway.amqp.settings.memory_limit == gateway.config.memory_limit
