"""A local stand-in for Anthropic's Messages API (POST /v1/messages), enough for the official SDK.

It checks the key (`x-api-key`, or `Authorization: Bearer` as SDK 2.x sends it) against the expected key (401 with Anthropic's error shape
otherwise), records each request body, and answers with a text block built from the request,
so a test can see what was sent. `model == "overloaded-model"` answers 529.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from standins.local_http import JsonHandler, serve


@dataclass
class MessagesState:
    api_key: str
    requests: list[dict[str, Any]] = field(default_factory=list)


class _Handler(JsonHandler):
    def do_POST(self) -> None:
        state: MessagesState = self.server.state  # type: ignore[attr-defined]
        if self.path.split("?")[0] != "/v1/messages":
            self.reply(404, {"type": "error", "error": {"type": "not_found_error", "message": "no such route"}})
            return
        bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        if state.api_key not in (self.headers.get("x-api-key"), bearer):
            self.reply(401, {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
            return
        request = json.loads(self.body())
        state.requests.append(request)
        if request.get("model") == "overloaded-model":
            self.reply(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
            return
        prompt = request["messages"][-1]["content"]
        text = f"Diagnosis of {len(prompt)} characters: the run went through its phases; stop now."
        self.reply(
            200,
            {
                "id": f"msg_{len(state.requests)}",
                "type": "message",
                "role": "assistant",
                "model": request["model"],
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": len(prompt) // 4, "output_tokens": len(text) // 4},
            },
        )


@contextmanager
def messages_api(api_key: str = "sk-ant-test-secret-0123456789") -> Iterator[tuple[str, MessagesState]]:
    """Serve the stand-in; yields (base_url, state)."""
    state = MessagesState(api_key=api_key)
    with serve(_Handler, state) as url:
        yield url, state


@pytest.fixture
def anthropic_standin(monkeypatch) -> Iterator[MessagesState]:
    """The stand-in, with ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL pointing at it."""
    with messages_api() as (url, state):
        monkeypatch.setenv("ANTHROPIC_API_KEY", state.api_key)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
        yield state
