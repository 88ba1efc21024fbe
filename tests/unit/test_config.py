import pytest

from evolver.config import ConfigError, load_settings


def test_defaults_yaml_and_env_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("bus:\n  max_deliver: 7\n  ack_wait_s: 30\nnats:\n  url: nats://10.0.0.1:4222\n")
    s = load_settings(f, environ={"EVOLVER_BUS__MAX_DELIVER": "9"})
    assert s.bus.max_deliver == 9  # env beats file
    assert s.bus.ack_wait_s == 30  # file beats default
    assert s.nats.url == "nats://10.0.0.1:4222"
    assert s.grpc.default_deadline_s == 30.0  # default
    assert load_settings(environ={"EVOLVER_CONFIG": str(f)}).bus.max_deliver == 7


@pytest.mark.parametrize("env, key", [
    ({"EVOLVER_BUS__MAX_DELIVER": "0"}, "bus.max_deliver"),
    ({"EVOLVER_BUS__MAX_DELIVER": "many"}, "bus.max_deliver"),
    ({"EVOLVER_NATS__URL": "http://x:1"}, "nats.url"),
    ({"EVOLVER_GRPC__PORT": "70000"}, "grpc.port"),
    ({"EVOLVER_BUS__TYPO": "1"}, "bus.typo"),
])
def test_bad_values_name_the_key(env, key):
    with pytest.raises(ConfigError, match=rf"config error: {key}:"):
        load_settings(environ=env)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_settings(tmp_path / "missing.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("bus: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad, environ={})
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(lst, environ={})
    nested = tmp_path / "nested.yaml"
    nested.write_text("grpc:\n  nope: 1\n")
    with pytest.raises(ConfigError, match="grpc.nope: unknown key"):
        load_settings(nested, environ={})
