"""asyncio client: the same methods as Client, as coroutines; generate() is
an async iterator."""
from typing import AsyncIterator, Optional

import grpc
from grpc import aio

from . import _types as t
from ._generated import generation_pb2 as pb
from ._generated import generation_pb2_grpc as pb_grpc


class AsyncClient:
    """See Client for the arguments. Use inside a running event loop:

        async with AsyncClient("127.0.0.1:50051") as c:
            async for chunk in c.generate("Hi", max_tokens=8): ...
    """

    def __init__(self, address: str, *, api_key: Optional[str] = None, tls: bool = False,
                 root_certificates: Optional[bytes] = None, private_key: Optional[bytes] = None,
                 certificate_chain: Optional[bytes] = None, timeout: Optional[float] = None,
                 options=(), tls_ca_file: Optional[str] = None,
                 tls_cert_file: Optional[str] = None, tls_key_file: Optional[str] = None):
        creds, target = t.channel_args(address, tls, root_certificates, private_key,
                                       certificate_chain, tls_ca_file, tls_cert_file,
                                       tls_key_file)
        self._channel = (aio.secure_channel(target, creds, options=options) if creds
                         else aio.insecure_channel(target, options=options))
        self._stub = pb_grpc.GenerationStub(self._channel)
        self._metadata = t.metadata(api_key)
        self._timeout = timeout

    async def generate(self, prompt: Optional[str] = None, *, timeout: Optional[float] = None,
                       **kwargs) -> AsyncIterator[t.Chunk]:
        request = t.build_request(prompt, **kwargs)
        call = self._stub.Generate(request, timeout=timeout or self._timeout,
                                   metadata=self._metadata)
        try:
            async for response in call:
                yield t.to_chunk(response)
        except grpc.RpcError as e:
            raise t.Error.from_rpc(e) from None
        finally:
            call.cancel()

    async def complete(self, prompt: Optional[str] = None, **kwargs) -> t.Completion:
        return t.join([c async for c in self.generate(prompt, **kwargs)])

    async def chat(self, messages, **kwargs) -> t.Completion:
        """A whole chat Completion; stream with generate(messages=...)."""
        return await self.complete(messages=messages, **kwargs)

    async def tokenize(self, text: Optional[str] = None, *, messages=None,
                       timeout: Optional[float] = None) -> t.Tokens:
        try:
            r = await self._stub.Tokenize(t.tokenize_request(text, messages),
                                          timeout=timeout or self._timeout,
                                          metadata=self._metadata)
        except grpc.RpcError as e:
            raise t.Error.from_rpc(e) from None
        return t.Tokens(list(r.token_ids), list(r.tokens))

    async def model_info(self, *, timeout: Optional[float] = None) -> t.ModelInfo:
        try:
            r = await self._stub.ModelInfo(pb.ModelInfoRequest(),
                                           timeout=timeout or self._timeout,
                                           metadata=self._metadata)
        except grpc.RpcError as e:
            raise t.Error.from_rpc(e) from None
        return t.to_model_info(r)

    async def close(self):
        await self._channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()
