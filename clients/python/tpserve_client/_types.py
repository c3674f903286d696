"""Plain result types and the request builder shared by Client and AsyncClient."""
from dataclasses import dataclass, field
from typing import Iterable, List, Mapping, Optional, Sequence, Union

import grpc

from ._generated import generation_pb2 as pb

Message = Union[Mapping[str, str], Sequence[str]]  # {"role": ..., "content": ...} or (role, content)


class Error(Exception):
    """A failed call: `code` is the grpc.StatusCode, `details` the server's message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc(cls, e: grpc.RpcError) -> "Error":
        return cls(e.code(), e.details())


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float
    text: str


@dataclass
class Logprob:
    sampled: TokenLogprob
    top: List[TokenLogprob] = field(default_factory=list)


@dataclass
class Chunk:
    """One streamed response: the tokens and text since the previous one. The
    last chunk has finish_reason ("stop" or "length"), stop_reason and usage."""
    text: str
    token_ids: List[int]
    logprobs: List[Logprob]
    finish_reason: Optional[str]
    stop_reason: str
    usage: Optional[Usage]
    request_id: str


@dataclass
class Completion:
    """A whole generation (the chunks joined)."""
    text: str
    token_ids: List[int]
    logprobs: List[Logprob]
    finish_reason: Optional[str]
    stop_reason: str
    usage: Usage
    request_id: str


@dataclass
class Tokens:
    token_ids: List[int]
    tokens: List[str]


@dataclass
class ModelInfo:
    model_name: str
    architecture: str
    vocab_size: int
    context_length: int
    tensor_parallel_size: int
    backend: str
    kv_block_size: int
    kv_num_blocks: int
    eos_token_ids: List[int]
    max_waiting_requests: int
    default_max_tokens: int
    num_groups: int = 1  # worker groups the router started with (data parallel)
    max_groups: int = 1  # most groups it accepts


_FINISH = {pb.FINISH_REASON_STOP: "stop", pb.FINISH_REASON_LENGTH: "length"}


def _token_logprob(t) -> TokenLogprob:
    return TokenLogprob(token_id=t.token_id, logprob=t.logprob, text=t.text)


def to_chunk(r) -> Chunk:
    return Chunk(
        text=r.text, token_ids=list(r.token_ids),
        logprobs=[Logprob(_token_logprob(lp.sampled), [_token_logprob(t) for t in lp.top])
                  for lp in r.logprobs],
        finish_reason=_FINISH.get(r.finish_reason), stop_reason=r.stop_reason,
        usage=Usage(r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.cached_tokens)
        if r.HasField("usage") else None,
        request_id=r.request_id)


def join(chunks: Iterable[Chunk]) -> Completion:
    out = Completion("", [], [], None, "", Usage(), "")
    for c in chunks:
        out.text += c.text
        out.token_ids += c.token_ids
        out.logprobs += c.logprobs
        out.request_id = c.request_id
        if c.finish_reason is not None:
            out.finish_reason, out.stop_reason = c.finish_reason, c.stop_reason
        if c.usage is not None:
            out.usage = c.usage
    return out


def to_model_info(r) -> ModelInfo:
    return ModelInfo(r.model_name, r.architecture, r.vocab_size, r.context_length,
                     r.tensor_parallel_size, r.backend, r.kv_block_size, r.kv_num_blocks,
                     list(r.eos_token_ids), r.max_waiting_requests, r.default_max_tokens,
                     r.num_groups, r.max_groups)


def _messages(messages: Iterable[Message]) -> "pb.ChatPrompt":
    chat = pb.ChatPrompt()
    for m in messages:
        role, content = (m["role"], m["content"]) if isinstance(m, Mapping) else m
        chat.messages.add(role=role, content=content)
    return chat


def build_request(prompt=None, *, token_ids=None, messages=None, max_tokens=None,
                  temperature=None, top_k=None, top_p=None, min_p=None, repetition_penalty=None,
                  presence_penalty=None, frequency_penalty=None, seed=None, stop=(),
                  stop_token_ids=(), ignore_eos=False, logprobs=False, top_logprobs=0,
                  priority=0, request_id="") -> "pb.GenerateRequest":
    """A GenerateRequest from keyword arguments; exactly one of prompt (text),
    token_ids or messages. Unset sampling fields take the server's defaults
    (greedy decoding)."""
    given = [x is not None for x in (prompt, token_ids, messages)]
    if sum(given) != 1:
        raise ValueError("give exactly one of prompt, token_ids or messages")
    req = pb.GenerateRequest(request_id=request_id, ignore_eos=ignore_eos, priority=priority)
    if prompt is not None:
        req.text = prompt
    elif token_ids is not None:
        req.token_ids.ids.extend(token_ids)
    else:
        req.chat.CopyFrom(_messages(messages))
    if max_tokens is not None:
        req.max_tokens = max_tokens
    s = req.sampling
    for name, value in (("temperature", temperature), ("top_k", top_k), ("top_p", top_p),
                        ("min_p", min_p), ("repetition_penalty", repetition_penalty),
                        ("presence_penalty", presence_penalty),
                        ("frequency_penalty", frequency_penalty), ("seed", seed)):
        if value is not None:
            setattr(s, name, value)
    s.logprobs = logprobs or top_logprobs > 0
    s.top_logprobs = top_logprobs
    req.stop.extend([stop] if isinstance(stop, str) else stop)
    req.stop_token_ids.extend(stop_token_ids)
    return req


def tokenize_request(text=None, messages=None) -> "pb.TokenizeRequest":
    if (text is None) == (messages is None):
        raise ValueError("give exactly one of text or messages")
    if text is not None:
        return pb.TokenizeRequest(text=text)
    return pb.TokenizeRequest(chat=_messages(messages))


def _read(path):
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def channel_args(address, tls, root_certificates, private_key, certificate_chain,
                 tls_ca_file=None, tls_cert_file=None, tls_key_file=None):
    """(credentials or None, target) for a channel. The *_file arguments
    read the PEM files (as the tpserve CLI's --tls_ca_file, --tls_cert_file,
    --tls_key_file do) and imply tls."""
    if (tls_cert_file is None) != (tls_key_file is None):
        raise ValueError("tls_cert_file and tls_key_file go together")
    if tls_ca_file or tls_cert_file:
        tls = True
        root_certificates = root_certificates or _read(tls_ca_file)
        private_key = private_key or _read(tls_key_file)
        certificate_chain = certificate_chain or _read(tls_cert_file)
    if not tls and not root_certificates:
        return None, address
    return grpc.ssl_channel_credentials(root_certificates=root_certificates,
                                        private_key=private_key,
                                        certificate_chain=certificate_chain), address


def metadata(api_key):
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()
