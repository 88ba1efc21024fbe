"""A vLLM emulator: the parts of vLLM's OpenAI-compatible server that Evolver uses, backed by
the `hf` decode loop on a CPU. An emulator, named as one: it exists because vLLM has no CPU
build, and it is used only where a GPU cannot be (tests, bench/adapter_swap.py).

What it implements, as vLLM does (vllm/entrypoints/openai/serving_models.py, serving_completion):
  - POST /v1/completions: a prompt of token ids (or text), `logprobs`, `return_tokens_as_token_ids`
    ("token_id:N" tokens), seed, temperature, top_p, max_tokens; `model` names the base model or a
    loaded LoRA adapter (404 "does not exist" otherwise); 400 "maximum context length" when
    prompt + max_tokens exceed --max-model-len. Log-probs are of the sampling distribution
    (temperature applied), i.e. vLLM started with `--logprobs-mode processed_logprobs`; the end
    token is part of the output when generation stops on it.
  - POST /v1/load_lora_adapter {lora_name, lora_path}: 400 when a name is missing or already
    loaded, 404 when the path holds no adapter; POST /v1/unload_lora_adapter {lora_name}: 404
    when unknown. Several adapters stay loaded; each request is served by the one it names.
  - GET /v1/models (base and adapters), GET /health.
Beyond vLLM, for tests: GET /emulator/ledger, what each request was generated with.

Concurrent requests are batched per adapter (one decode per adapter per batch window)."""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from fastapi import FastAPI, Request  # module level: FastAPI resolves the handlers' annotations here
from fastapi.responses import JSONResponse, PlainTextResponse

from evolver.models.backend import SamplingParams


class EmulatedEngine:
    """The model, its loaded adapters and a decode per batch; thread-safe."""

    def __init__(self, model_dir: Path | str, served_name: str, max_model_len: int = 8192, max_loras: int = 8,
                 dtype: str = "auto"):
        """dtype: vLLM's --dtype; "auto" = measured (decode.fast_dtype: bfloat16 on an AMX CPU)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from evolver.models.decode import dtype_setting, fast_dtype
        self.served_name, self.max_model_len, self.max_loras = served_name, max_model_len, max_loras
        self.dtype = dtype_setting(dtype) or fast_dtype("cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=self.dtype)  # as vLLM's --dtype
        self.model.eval()
        self.end_ids = {self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>")}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.adapters: dict[str, str] = {}  # name -> path
        self.lock = threading.Lock()
        self.ledger: list[dict] = []
        self.load_seconds: list[float] = []

    def load(self, name: str, path: str) -> None:
        from peft import PeftModel
        if not (Path(path) / "adapter_config.json").exists():
            raise FileNotFoundError(f"No adapter found for {path}")
        t0 = time.perf_counter()
        with self.lock:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(path, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.model, path, adapter_name=name)
            self.model.eval()
            self.adapters[name] = path
        self.load_seconds.append(time.perf_counter() - t0)

    def unload(self, name: str) -> None:
        with self.lock:
            self.model.delete_adapter(name)
            del self.adapters[name]
            if not self.adapters:
                # The last one gone: back to the plain model. A PeftModel left with no adapter
                # still names the deleted one as active, and the base model's next request
                # failed on it (KeyError in peft 0.21's forward: HTTP 500).
                self.model = self.model.unload()
                self.model.eval()

    def generate(self, model_name: str, prompts: Sequence[Sequence[int]],
                 samplings: Sequence[SamplingParams]) -> list:
        from evolver.models.decode import decode
        with self.lock:
            if model_name == self.served_name:
                ctx = self.model.disable_adapter() if self.adapters else nullcontext()
            else:
                self.model.set_adapter(model_name)
                ctx = nullcontext()
            with ctx:
                out = decode(self.model, prompts, samplings, pad_id=self.pad_id, end_ids=self.end_ids, device="cpu",
                             dtype=self.dtype)
            self.ledger.extend({"model": model_name, "prompt_tokens": len(p), "completion_tokens": len(d.token_ids)}
                               for p, d in zip(prompts, out))
        return out


def _error(status: int, message: str, kind: str):
    return JSONResponse({"object": "error", "message": message, "type": kind, "param": None, "code": status},
                        status_code=status)


def build_app(engine: EmulatedEngine, *, batch_window_s: float = 0.01):
    app = FastAPI(title="vLLM emulator (Evolver tests)")
    pending: dict[str, list] = {}  # model -> [(prompt, sampling, future)]

    async def flush(model: str) -> None:
        await asyncio.sleep(batch_window_s)
        batch = pending.pop(model, [])
        if not batch:
            return
        try:
            out = await asyncio.to_thread(engine.generate, model, [b[0] for b in batch], [b[1] for b in batch])
            for b, d in zip(batch, out):
                b[2].set_result(d)
        except Exception as e:  # every waiter hears about it
            for b in batch:
                if not b[2].done():
                    b[2].set_exception(e)

    def known(model: str) -> bool:
        return model == engine.served_name or model in engine.adapters

    @app.get("/health")
    async def health():
        return PlainTextResponse("")

    @app.get("/v1/models")
    async def models():
        cards = [{"id": engine.served_name, "object": "model", "max_model_len": engine.max_model_len,
                  "root": engine.served_name, "parent": None}]
        cards += [{"id": n, "object": "model", "root": p, "parent": engine.served_name}
                  for n, p in engine.adapters.items()]
        return {"object": "list", "data": cards}

    @app.get("/emulator/ledger")
    async def ledger():
        return {"requests": engine.ledger, "load_seconds": engine.load_seconds}

    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(request: Request):
        body = await request.json()
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _error(400, "Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput")
        if name in engine.adapters:
            return _error(400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput")
        if len(engine.adapters) >= engine.max_loras:
            return _error(400, f"Cannot load more than --max-loras={engine.max_loras} adapters.", "BadRequestError")
        try:
            await asyncio.to_thread(engine.load, name, path)
        except FileNotFoundError as e:
            return _error(404, str(e), "NotFoundError")
        except Exception as e:
            return _error(400, f"{type(e).__name__}: {e}", "BadRequestError")
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(request: Request):
        body = await request.json()
        name = body.get("lora_name")
        if not name:
            return _error(400, "either 'lora_name' and 'lora_int_id' needs to be provided.", "InvalidUserInput")
        if name not in engine.adapters:
            return _error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        await asyncio.to_thread(engine.unload, name)
        return PlainTextResponse(f"Success: LoRA adapter '{name}' removed successfully.")

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        model = body.get("model", "")
        if not known(model):
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            ids = engine.tokenizer.encode(prompt, add_special_tokens=False)
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            ids = prompt
        else:
            return _error(400, "prompt must be a string or a list of token ids", "BadRequestError")
        max_tokens = int(body.get("max_tokens") or 16)
        if len(ids) + max_tokens > engine.max_model_len:
            return _error(400, f"This model's maximum context length is {engine.max_model_len} tokens. However, you "
                          f"requested {len(ids) + max_tokens} tokens ({len(ids)} in the messages, {max_tokens} in the "
                          "completion). Please reduce the length of the messages or completion.", "BadRequestError")
        sampling = SamplingParams(max_new_tokens=max_tokens, temperature=float(body.get("temperature", 1.0)),
                                  top_p=float(body.get("top_p", 1.0)), seed=body.get("seed"))
        fut = asyncio.get_running_loop().create_future()
        first = model not in pending
        pending.setdefault(model, []).append((ids, sampling, fut))
        if first:
            asyncio.create_task(flush(model))
        d = await fut
        text = engine.tokenizer.decode([t for t in d.token_ids if t not in engine.end_ids], skip_special_tokens=False)
        choice = {"index": 0, "text": text, "finish_reason": d.finish_reason, "stop_reason": None, "logprobs": None}
        if body.get("logprobs") is not None:
            as_ids = bool(body.get("return_tokens_as_token_ids"))
            choice["logprobs"] = {
                "tokens": [f"token_id:{t}" if as_ids else engine.tokenizer.decode([t]) for t in d.token_ids],
                "token_logprobs": list(d.logprobs), "text_offset": [0] * len(d.token_ids), "top_logprobs": None}
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": model, "choices": [choice],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": len(d.token_ids),
                          "total_tokens": len(ids) + len(d.token_ids)}}

    return app


def start(model_dir: Path | str, *, port: int, served_name: str, max_model_len: int = 8192, max_loras: int = 8,
          threads: int = 1, timeout_s: float = 120.0, dtype: str = "auto"):
    """The emulator as its own process on a loopback port (the caller's free one: picking it
    belongs to evolver.stack, above this layer): (base url ".../v1", process). Its output goes
    to a temporary file, quoted if it exits during start."""
    import subprocess
    import sys
    import tempfile

    import httpx

    log = tempfile.TemporaryFile()
    p = subprocess.Popen([sys.executable, "-m", "evolver.models.vllm_emulator", str(model_dir), "--port", str(port),
                          "--served-model-name", served_name, "--max-model-len", str(max_model_len),
                          "--max-loras", str(max_loras), "--threads", str(threads), "--dtype", dtype],
                         stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return f"http://127.0.0.1:{port}/v1", p
        except httpx.HTTPError:
            time.sleep(0.2)
        if p.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the vLLM emulator exited: {log.read().decode()[-2000:]}")
    p.kill()
    raise RuntimeError("the vLLM emulator did not become healthy")


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--served-model-name", default="")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-model-len", type=int, default=8192)
    ap.add_argument("--max-loras", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    a = ap.parse_args(argv)
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    engine = EmulatedEngine(a.model_dir, a.served_model_name or Path(a.model_dir).name, a.max_model_len, a.max_loras,
                            a.dtype)
    uvicorn.run(build_app(engine), host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
