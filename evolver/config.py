"""Typed settings, loaded from an optional YAML file and EVOLVER_* environment variables and
validated at start. A bad value fails fast with a message naming the key.

Precedence: defaults < YAML file (EVOLVER_CONFIG or an explicit path) < environment variables.
Environment variables use "__" between levels: EVOLVER_NATS__URL, EVOLVER_BUS__MAX_DELIVER.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(Exception):
    """Raised with a message that names the offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NatsSettings(_Section):
    url: str = "nats://127.0.0.1:4222"
    # Credentials: a .creds file, or user/password. Never anonymous in a cluster.
    creds_file: str | None = None
    user: str | None = None
    password: str | None = None
    tls_ca_file: str | None = None
    connect_timeout_s: float = Field(5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError("must start with nats://, tls://, ws:// or wss://")
        return v


class BusSettings(_Section):
    # Seconds the server waits for an ack before redelivering; heartbeats extend it.
    ack_wait_s: float = Field(60.0, gt=0)
    max_deliver: int = Field(5, ge=1)
    # nak(delay) schedule for handler failures: base * 2**(attempt-1), capped.
    retry_base_s: float = Field(1.0, ge=0)
    retry_max_s: float = Field(60.0, ge=0)
    fetch_batch: int = Field(8, ge=1)
    fetch_timeout_s: float = Field(2.0, gt=0)
    # Payloads at or above this size travel through the Object Store.
    inline_payload_limit: int = Field(512 * 1024, ge=1024)
    duplicate_window_s: float = Field(600.0, gt=0)
    drain_timeout_s: float = Field(10.0, gt=0)


class GrpcSettings(_Section):
    host: str = "127.0.0.1"
    # TLS for the gRPC server (both set) and for clients verifying it (ca_file).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_file: str | None = None
    port: int = Field(0, ge=0, le=65535)
    # Seconds in-flight RPCs get to finish on SIGTERM; health is NOT_SERVING meanwhile.
    shutdown_grace_s: float = Field(5.0, ge=0)
    # Seconds health stays NOT_SERVING before the server stops accepting, so probes and load
    # balancers see it (k8s: keep terminationGracePeriodSeconds above notice + drain + grace).
    shutdown_notice_s: float = Field(0.0, ge=0)
    default_deadline_s: float = Field(30.0, gt=0)
    # A file holding the shared bearer token (a mounted Secret): servers require it, clients send
    # it. Without it a server bound beyond loopback refuses to start unless allow_unauthenticated.
    auth_token_file: str | None = None
    allow_unauthenticated: bool = False
    # A plaintext port serving only gRPC health (for kubelet probes when the API port uses TLS).
    health_port: int | None = Field(None, ge=0, le=65535)


class TelemetrySettings(_Section):
    service_name: str | None = None
    # OTLP/gRPC endpoint; OTEL_EXPORTER_OTLP_ENDPOINT also enables export.
    otlp_endpoint: str | None = None
    # Append finished spans as JSONL here (the embedded stack collects traces this way).
    spans_jsonl: str | None = None


class MemorySettings(_Section):
    """Where experiences live: the embedded Qdrant engine under the state directory (default)
    or a Qdrant server."""

    backend: Literal["edge", "qdrant"] = "edge"
    qdrant_url: str = ""
    dedup_threshold: float = Field(0.9, gt=0, le=1)


class LlmRoleSettings(_Section):
    """One auxiliary LLM role. endpoint "local" = the local policy model (offline default);
    otherwise an OpenAI-compatible base URL such as http://vllm:8000/v1."""

    endpoint: str = "local"
    model: str = ""
    api_key_env: str = ""  # name of the environment variable holding the key (never the key itself)
    temperature: float = Field(0.0, ge=0)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0)
    concurrency: int = Field(4, ge=1)
    # Prime the reply with the template's `## reply` text (the local model always can; an endpoint
    # only if it is vLLM, whose chat API continues a final assistant message: OpenAI's rejects it).
    prefill: bool = False

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if v != "local" and not v.startswith(("http://", "https://")):
            raise ValueError("must be 'local' or an http(s):// base URL")
        return v


class PolicySettings(_Section):
    """Where rollouts get their completions: the in-process `hf` backend (CPU default) or an
    OpenAI-compatible server (`openai`, e.g. vLLM on GPU nodes)."""

    backend: Literal["hf", "openai"] = "hf"
    model_dir: str = ""  # hf: prepared model folder (default: the `models prepare` cache)
    endpoint: str = ""  # openai: base URL, e.g. http://vllm:8000/v1
    model: str = ""  # openai: served model name
    # hf: the KV of recent turns kept for the next turn of the same episode (0: off). ~46 KB a
    # token for SmolLM2-135M in float32: 16k tokens ~0.75 GB, inside the explorer's 4 GiB limit.
    prefix_cache_tokens: int = Field(16384, ge=0)
    # openai: where this explorer writes each policy version's adapter for the server to load
    # (/v1/load_lora_adapter takes a path on the server): a folder both can read, e.g. a shared
    # volume. Empty = <state_dir>/adapters. server_adapter_dir: that folder as the server sees it
    # (empty = the same path).
    adapter_dir: str = ""
    server_adapter_dir: str = ""
    # openai: adapters kept loaded on the server (older versions are unloaded; reloaded on demand).
    max_loaded_adapters: int = Field(2, ge=1)
    # The compute dtype of the hf backend's decode and of the trainer's update. auto = measured
    # (bfloat16 where its matmul runs >= 1.5x faster than float32: a GPU, an AMX CPU; float32 on
    # AVX2). float32 makes every process agree to float32's precision (tests, debugging).
    compute_dtype: Literal["auto", "float32", "bfloat16"] = "auto"


LLM_ROLES = ("explorer", "task_writer", "judge", "step_attributor", "experience_extractor")


class Settings(_Section):
    nats: NatsSettings = NatsSettings()
    bus: BusSettings = BusSettings()
    grpc: GrpcSettings = GrpcSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    policy: PolicySettings = PolicySettings()
    memory: MemorySettings = MemorySettings()
    llm_roles: dict[str, LlmRoleSettings] = Field(default_factory=lambda: {r: LlmRoleSettings() for r in LLM_ROLES})
    state_dir: str = ".evolver"
    # gRPC addresses of other services by name (e.g. memory: memory:50051 in a cluster). A service
    # missing here is looked up in the `services` KV bucket, where every service registers the
    # address it serves on (the embedded stack relies on that).
    endpoints: dict[str, str] = Field(default_factory=dict)

    @field_validator("llm_roles")
    @classmethod
    def _roles(cls, v: dict[str, LlmRoleSettings]) -> dict[str, LlmRoleSettings]:
        unknown = set(v) - set(LLM_ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; roles are {list(LLM_ROLES)}")
        return {r: v.get(r, LlmRoleSettings()) for r in LLM_ROLES}


def _set_path(tree: dict[str, Any], path: list[str], value: str) -> None:
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config error: {'.'.join(path)}: conflicts with a scalar value")
    node[path[-1]] = value


# EVOLVER_* variables that are not settings keys: read where they are used.
NOT_SETTINGS = frozenset({"EVOLVER_CONFIG", "EVOLVER_MODEL_CACHE"})


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith("EVOLVER_") or key in NOT_SETTINGS:
            continue
        path = [p.lower() for p in key[len("EVOLVER_"):].split("__") if p]
        if path:
            _set_path(tree, path, value)
    return tree


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def problems(error: ValidationError) -> list[tuple[str, str]]:
    """(dotted key, message) per validation error, for messages that name the bad key."""
    out = []
    for e in error.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        out.append((key, "unknown key" if e["type"] == "extra_forbidden" else e["msg"]))
    return out


def _describe(error: ValidationError) -> str:
    return "\n".join(f"config error: {key}: {msg}" for key, msg in problems(error))


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Loads and validates settings; raises ConfigError naming the bad key."""
    environ = dict(os.environ if environ is None else environ)
    path = path or environ.get("EVOLVER_CONFIG")
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config error: file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config error: {p}: not valid YAML: {e}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config error: {p}: top level must be a mapping")
        data = loaded
    data = _merge(data, _env_overrides(environ))
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None
