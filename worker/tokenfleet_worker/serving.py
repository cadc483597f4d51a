"""Turns OpenAI requests into engine sub-requests, and engine outputs into OpenAI responses
(whole, or as server-sent events exactly as OpenAI streams them)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tokenfleet_worker.async_engine import RequestStream, SubRequest
from tokenfleet_worker.batch import SamplingParams
from tokenfleet_worker.config import EngineConfig
from tokenfleet_worker.engine import RequestError, check_request
from tokenfleet_worker.errors import OpenAIError, bad_request, error_body
from tokenfleet_worker.outputs import RequestOutput, TokenLogprob
from tokenfleet_worker.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatDelta,
    ChatLogprobs,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    TokenLogprobEntry,
    TopLogprob,
    Usage,
)
from tokenfleet_worker.tokenizer import ChatTemplateError, TokenizerBundle

Request = CompletionRequest | ChatCompletionRequest


def _sampling(req: Request, max_tokens: int, choice: int, num_logprobs: int | None) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        seed=None if req.seed is None else req.seed + choice,  # distinct but reproducible choices
        stop=req.stop_strings,
        stop_token_ids=tuple(req.stop_token_ids or ()),
        ignore_eos=req.ignore_eos,
        logprobs=num_logprobs,
    )


def _subrequests(
    req: Request, prompts: list[list[int]], max_tokens: int | None, config: EngineConfig, vocab_size: int
) -> list[SubRequest]:
    if isinstance(req, ChatCompletionRequest):
        num_logprobs = (req.top_logprobs or 0) if req.logprobs else None
    else:
        num_logprobs = req.logprobs
    subs = []
    for p, prompt in enumerate(prompts):
        if any(not 0 <= t < vocab_size for t in prompt):
            raise bad_request(f"prompt token ids must be in [0, {vocab_size})", param="prompt")
        budget = max_tokens if max_tokens is not None else config.max_model_len - len(prompt)
        for j in range(req.n):
            sampling = _sampling(req, max(budget, 1), j, num_logprobs)
            try:
                check_request(config, len(prompt), sampling)
            except RequestError as err:
                raise bad_request(
                    str(err), param="messages" if isinstance(req, ChatCompletionRequest) else "prompt"
                ) from None
            subs.append(SubRequest(prompt, sampling, index=p * req.n + j))
    return subs


def completion_subrequests(
    req: CompletionRequest, tokenizer: TokenizerBundle, config: EngineConfig
) -> list[SubRequest]:
    raw = req.prompt
    items: list[str | list[int]]
    if isinstance(raw, str):
        items = [raw]
    elif all(isinstance(x, int) for x in raw):
        items = [[x for x in raw if isinstance(x, int)]]
    else:
        items = [x for x in raw if not isinstance(x, int)]
    prompts = [tokenizer.encode(x) if isinstance(x, str) else list(x) for x in items]
    return _subrequests(req, prompts, req.max_tokens, config, tokenizer.vocab_size)


def chat_subrequests(
    req: ChatCompletionRequest, tokenizer: TokenizerBundle, config: EngineConfig
) -> list[SubRequest]:
    try:
        prompt = tokenizer.encode_chat([m.as_template_input() for m in req.messages])
    except ChatTemplateError as err:
        raise bad_request(str(err), param="messages") from None
    return _subrequests(req, [prompt], req.max_output_tokens, config, tokenizer.vocab_size)


@dataclass
class _Tally:
    """Usage and per-choice state accumulated over a request's outputs."""

    prompt_tokens: dict[int, int] = field(default_factory=dict)  # per prompt, counted once
    completion_tokens: dict[int, int] = field(default_factory=dict)
    n: int = 1

    def add(self, out: RequestOutput) -> None:
        if out.error is not None:
            status = 400 if out.is_client_error else 503
            raise OpenAIError(status, out.error, code="invalid_request" if status == 400 else "engine_error")
        self.prompt_tokens[out.index // self.n] = out.num_prompt_tokens
        self.completion_tokens[out.index] = out.num_output_tokens

    def usage(self) -> Usage:
        prompt, completion = sum(self.prompt_tokens.values()), sum(self.completion_tokens.values())
        return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _completion_logprobs(entries: list[TokenLogprob], start_offset: int) -> CompletionLogprobs:
    offsets, at = [], start_offset
    for entry in entries:
        offsets.append(at)
        at += len(entry.token)
    return CompletionLogprobs(
        tokens=[e.token for e in entries],
        token_logprobs=[e.logprob for e in entries],
        top_logprobs=[dict(e.top) for e in entries],
        text_offset=offsets,
    )


def _chat_logprobs(entries: list[TokenLogprob]) -> ChatLogprobs:
    def top(token: str, logprob: float) -> TopLogprob:
        return TopLogprob(token=token, logprob=logprob, bytes=list(token.encode()))

    return ChatLogprobs(
        content=[
            TokenLogprobEntry(
                token=e.token,
                logprob=e.logprob,
                bytes=list(e.token.encode()),
                top_logprobs=[top(t, lp) for t, lp in e.top],
            )
            for e in entries
        ]
    )


async def collect(
    stream: RequestStream, n: int
) -> tuple[dict[int, RequestOutput], dict[int, str], dict[int, list[TokenLogprob]], Usage]:
    """Wait for every choice to finish; return last outputs, texts and logprobs per choice index."""
    tally = _Tally(n=n)
    last: dict[int, RequestOutput] = {}
    texts: dict[int, str] = {}
    logprobs: dict[int, list[TokenLogprob]] = {}
    async for out in stream.outputs():
        tally.add(out)
        last[out.index] = out
        texts[out.index] = texts.get(out.index, "") + out.text
        logprobs.setdefault(out.index, []).extend(out.logprobs)
    return last, texts, logprobs, tally.usage()


async def completion_response(
    stream: RequestStream, req: CompletionRequest, model: str
) -> CompletionResponse:
    last, texts, logprobs, usage = await collect(stream, req.n)
    choices = [
        CompletionChoice(
            index=i,
            text=texts[i],
            logprobs=_completion_logprobs(logprobs[i], 0) if req.logprobs is not None else None,
            finish_reason=last[i].finish_reason,
        )
        for i in sorted(last)
    ]
    return CompletionResponse(
        id=stream.request_id, created=int(time.time()), model=model, choices=choices, usage=usage
    )


async def chat_response(
    stream: RequestStream, req: ChatCompletionRequest, model: str
) -> ChatCompletionResponse:
    last, texts, logprobs, usage = await collect(stream, req.n)
    choices = [
        ChatChoice(
            index=i,
            message=AssistantMessage(content=texts[i]),
            logprobs=_chat_logprobs(logprobs[i]) if req.logprobs else None,
            finish_reason=last[i].finish_reason,
        )
        for i in sorted(last)
    ]
    return ChatCompletionResponse(
        id=stream.request_id, created=int(time.time()), model=model, choices=choices, usage=usage
    )


def sse(payload: str) -> str:
    return f"data: {payload}\n\n"


def _error_event(err: OpenAIError) -> str:
    return sse(json.dumps(error_body(err.status, err.message, code=err.code)))


async def stream_completion(stream: RequestStream, req: CompletionRequest, model: str) -> AsyncIterator[str]:
    tally = _Tally(n=req.n)
    created = int(time.time())
    offsets: dict[int, int] = {}
    try:
        async for out in stream.outputs():
            tally.add(out)
            if not out.text and not out.finished:
                continue
            logprobs = None
            if req.logprobs is not None:
                logprobs = _completion_logprobs(list(out.logprobs), offsets.get(out.index, 0))
            offsets[out.index] = offsets.get(out.index, 0) + len(out.text)
            choice = CompletionChoice(
                index=out.index, text=out.text, logprobs=logprobs, finish_reason=out.finish_reason
            )
            chunk = CompletionResponse(id=stream.request_id, created=created, model=model, choices=[choice])
            yield sse(chunk.model_dump_json())
    except OpenAIError as err:
        yield _error_event(err)
    else:
        if req.include_usage:
            final = CompletionResponse(
                id=stream.request_id, created=created, model=model, choices=[], usage=tally.usage()
            )
            yield sse(final.model_dump_json())
    yield sse("[DONE]")


async def stream_chat(stream: RequestStream, req: ChatCompletionRequest, model: str) -> AsyncIterator[str]:
    tally = _Tally(n=req.n)
    created = int(time.time())

    def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> str:
        body = ChatCompletionChunk(
            id=stream.request_id, created=created, model=model, choices=choices, usage=usage
        )
        data = body.model_dump(mode="json")
        for choice in data["choices"]:  # OpenAI omits unset delta fields
            choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
        if not req.include_usage:
            data.pop("usage")
        return sse(json.dumps(data, separators=(",", ":")))

    yield chunk(
        [ChatChunkChoice(index=i, delta=ChatDelta(role="assistant", content="")) for i in range(req.n)]
    )
    try:
        async for out in stream.outputs():
            tally.add(out)
            if not out.text and not out.finished:
                continue
            logprobs = _chat_logprobs(list(out.logprobs)) if req.logprobs else None
            delta = ChatDelta(content=out.text) if out.text else ChatDelta()
            yield chunk(
                [
                    ChatChunkChoice(
                        index=out.index, delta=delta, logprobs=logprobs, finish_reason=out.finish_reason
                    )
                ]
            )
    except OpenAIError as err:
        yield _error_event(err)
    else:
        if req.include_usage:
            yield chunk([], tally.usage())
    yield sse("[DONE]")
