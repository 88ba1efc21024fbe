"""A scripted OpenAI-compatible chat server: a FAKE, named as one. It stands in for a hosted
LLM API or a GPU-served model (neither can run here) in tests of the LLM roles' plumbing:
prompt assembly, parsing, retries, timeouts and fallbacks. It runs no model: each request gets
the next canned reply of the role its system prompt names.

Real HTTP on loopback (stdlib ThreadingHTTPServer), so the roles' httpx client, its retries and
deadlines run as they would against vLLM or an API."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A phrase of each role's packaged system prompt -> the role.
ROLE_MARKERS = {"process reward evaluator": "step_attributor", "task discovery expert": "task_writer",
                "strict evaluator": "judge", "distil reusable experience": "experience_extractor",
                "check experiences written": "experience_validator", "short briefing": "experience_rewriter",
                "intelligent environment explorer": "explorer", "strictly check whether an agent": "feasibility",
                "Feel free to use this tip": "solver"}


@dataclass
class Reply:
    text: str | None = ""
    status: int = 200
    delay_s: float = 0.0
    refusal: str = ""  # OpenAI's refusal field (content null)
    raw: str = ""  # a body sent as is (malformed JSON)


class ScriptedOpenAIServer:
    def __init__(self, default: Reply | None = None):
        self.script: dict[str, list[Reply]] = {}
        self.default = default or Reply("")  # a Reply or a function of the body
        self.requests: list[dict] = []  # every body received, with "_role"
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                return

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                reply = outer._next(body)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.raw:
                    payload = reply.raw.encode()
                elif reply.status >= 400:
                    payload = json.dumps({"error": {"message": "scripted failure"}}).encode()
                else:
                    prompt = sum(len(m.get("content") or "") for m in body.get("messages", [])) // 4
                    content = None if reply.refusal else reply.text
                    payload = json.dumps({
                        "id": "fake", "object": "chat.completion", "model": body.get("model", ""),
                        "choices": [{"index": 0, "finish_reason": "stop", "message": {
                            "role": "assistant", "content": content, "refusal": reply.refusal or None}}],
                        "usage": {"prompt_tokens": prompt, "completion_tokens": len((reply.text or "").split()),
                                  "total_tokens": 0}}).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _next(self, body: dict) -> Reply:
        system = next((m.get("content") or "" for m in body.get("messages", []) if m.get("role") == "system"), "")
        first_user = next((m.get("content") or "" for m in body.get("messages", []) if m.get("role") == "user"), "")
        role = next((r for marker, r in ROLE_MARKERS.items() if marker in system or marker in first_user), "unknown")
        with self._lock:
            self.requests.append({**body, "_role": role})
            queue = self.script.get(role) or []
            reply = queue.pop(0) if queue else self.default
        return reply(body) if callable(reply) else reply

    def add(self, role: str, *replies) -> None:
        """Canned replies for a role, in order: a Reply, or a function of the request body that
        returns one (concurrent calls arrive in any order)."""
        with self._lock:
            self.script.setdefault(role, []).extend(replies)

    def calls(self, role: str) -> list[dict]:
        return [r for r in self.requests if r["_role"] == role]

    def __enter__(self) -> "ScriptedOpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
