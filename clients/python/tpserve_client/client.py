"""Blocking client: Client(address).generate(...) streams Chunks."""
from typing import Iterator, Optional

import grpc

from . import _types as t
from ._generated import generation_pb2 as pb
from ._generated import generation_pb2_grpc as pb_grpc


class Client:
    """A connection to a tpserve router's gRPC port.

    address: "host:port". tls: use TLS (with root_certificates, or the system
    roots when None); private_key + certificate_chain add a client
    certificate (mTLS); tls_ca_file, tls_cert_file and tls_key_file give the
    same as PEM file paths. api_key: sent as "authorization: Bearer <key>" on
    every call. timeout: default per-call deadline in seconds (None = none).
    """

    def __init__(self, address: str, *, api_key: Optional[str] = None, tls: bool = False,
                 root_certificates: Optional[bytes] = None, private_key: Optional[bytes] = None,
                 certificate_chain: Optional[bytes] = None, timeout: Optional[float] = None,
                 options=(), tls_ca_file: Optional[str] = None,
                 tls_cert_file: Optional[str] = None, tls_key_file: Optional[str] = None):
        creds, target = t.channel_args(address, tls, root_certificates, private_key,
                                       certificate_chain, tls_ca_file, tls_cert_file,
                                       tls_key_file)
        self._channel = (grpc.secure_channel(target, creds, options=options) if creds
                         else grpc.insecure_channel(target, options=options))
        self._stub = pb_grpc.GenerationStub(self._channel)
        self._metadata = t.metadata(api_key)
        self._timeout = timeout

    def generate(self, prompt: Optional[str] = None, *, timeout: Optional[float] = None,
                 **kwargs) -> Iterator[t.Chunk]:
        """Streams a generation. One of prompt (text), token_ids= or
        messages= (chat); keyword arguments as in tpserve.v1.GenerateRequest
        (max_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
        presence_penalty, frequency_penalty, seed, stop, stop_token_ids,
        ignore_eos, logprobs, top_logprobs, priority, request_id). Closing
        the iterator early cancels the request on the server."""
        request = t.build_request(prompt, **kwargs)
        call = self._stub.Generate(request, timeout=timeout or self._timeout,
                                   metadata=self._metadata)
        try:
            for response in call:
                yield t.to_chunk(response)
        except grpc.RpcError as e:
            raise t.Error.from_rpc(e) from None
        finally:
            call.cancel()  # no-op when the stream already ended

    def complete(self, prompt: Optional[str] = None, **kwargs) -> t.Completion:
        """generate() joined into one Completion."""
        return t.join(self.generate(prompt, **kwargs))

    def chat(self, messages, *, stream: bool = False, **kwargs):
        """Chat messages ([{"role": ..., "content": ...}] or (role, content)
        pairs) rendered with the model's template: a Completion, or a Chunk
        iterator with stream=True."""
        chunks = self.generate(messages=messages, **kwargs)
        return chunks if stream else t.join(chunks)

    def tokenize(self, text: Optional[str] = None, *, messages=None,
                 timeout: Optional[float] = None) -> t.Tokens:
        try:
            r = self._stub.Tokenize(t.tokenize_request(text, messages),
                                    timeout=timeout or self._timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise t.Error.from_rpc(e) from None
        return t.Tokens(list(r.token_ids), list(r.tokens))

    def model_info(self, *, timeout: Optional[float] = None) -> t.ModelInfo:
        try:
            r = self._stub.ModelInfo(pb.ModelInfoRequest(), timeout=timeout or self._timeout,
                                     metadata=self._metadata)
        except grpc.RpcError as e:
            raise t.Error.from_rpc(e) from None
        return t.to_model_info(r)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
