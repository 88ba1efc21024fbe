"""The auxiliary chat roles' default: the local policy model, through the same complete()
interface as AuxChatClient, so the loop runs fully offline."""

from __future__ import annotations

from evolver.models.backend import ChatReply, GenerationRequest, SamplingParams


class LocalChat:
    prefills = True  # the reply can be primed: its tokens follow the generation prompt

    def __init__(self, backend, *, temperature: float = 0.0):
        self.backend = backend
        self.temperature = temperature

    async def complete(self, messages: list[dict[str, str]], *, temperature: float | None = None,
                       max_tokens: int = 512, reply_prefix: str = "") -> ChatReply:
        """reply_prefix: the assistant turn opens with it and the model continues; the returned
        text is the continuation only."""
        tok = self.backend.tokenizer
        ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        if not isinstance(ids, list):  # some tokenizers return a BatchEncoding
            ids = list(ids["input_ids"])
        if reply_prefix:
            ids = ids + tok.encode(reply_prefix, add_special_tokens=False)
        sampling = SamplingParams(max_new_tokens=max_tokens,
                                  temperature=self.temperature if temperature is None else temperature)
        (c,) = await self.backend.generate([GenerationRequest(ids, sampling)])
        return ChatReply(c.text, len(ids), len(c.token_ids), c.finish_reason)

    async def close(self) -> None:
        return None
