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


def test_llm_roles_default_to_the_local_model_and_are_configurable_per_role(tmp_path):
    from evolver.models.local_chat import LocalChat
    from evolver.models.openai_compat import AuxChatClient
    from evolver.models.roles import client_for

    s = load_settings(environ={})
    assert {r: c.endpoint for r, c in s.llm_roles.items()} == {
        "explorer": "local", "task_writer": "local", "judge": "local", "step_attributor": "local",
        "experience_extractor": "local"}
    f = tmp_path / "roles.yaml"
    f.write_text("llm_roles:\n  judge:\n    endpoint: http://vllm:8000/v1\n    model: qwen\n    temperature: 0.3\n"
                 "    concurrency: 2\n")
    s2 = load_settings(f, environ={})
    judge = client_for("judge", s2)
    assert isinstance(judge, AuxChatClient) and judge.http.s.model == "qwen" and judge.http.s.concurrency == 2
    assert isinstance(client_for("task_writer", s2, local_backend=object()), LocalChat)
    bad = tmp_path / "bad.yaml"
    bad.write_text("llm_roles:\n  oracle:\n    endpoint: local\n")
    with pytest.raises(ConfigError, match="llm_roles: .*unknown roles"):
        load_settings(bad, environ={})
    with pytest.raises(ConfigError, match="llm_roles.judge.endpoint"):
        load_settings(environ={"EVOLVER_LLM_ROLES__JUDGE__ENDPOINT": "ftp://x"})


def test_model_cache_variable_is_not_a_settings_key(tmp_path):
    """EVOLVER_MODEL_CACHE (read by `models prepare`) must not make every service exit."""
    from evolver.config import load_settings
    s = load_settings(environ={"EVOLVER_MODEL_CACHE": str(tmp_path), "EVOLVER_NATS__URL": "nats://h:1"})
    assert s.nats.url == "nats://h:1"


def test_run_config_bounds_what_the_explorer_can_run():
    import pytest as _pytest

    from evolver.limits import GROUP_SIZE_MAX
    from services.trainer.run_config import RunConfigError, parse_run_spec
    assert parse_run_spec(f"group_size: {GROUP_SIZE_MAX}").group_size == GROUP_SIZE_MAX
    with _pytest.raises(RunConfigError) as e:
        parse_run_spec(f"group_size: {GROUP_SIZE_MAX + 1}")
    assert e.value.field == "group_size"
    with _pytest.raises(RunConfigError) as e:
        parse_run_spec("eval: {k: 65}")
    assert e.value.field == "eval.k"
