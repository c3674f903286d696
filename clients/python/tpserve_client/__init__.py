"""Typed client for tpserve's gRPC API (tpserve.v1.Generation).

    from tpserve_client import Client
    with Client("127.0.0.1:50051") as client:
        for chunk in client.generate("The capital of France is", max_tokens=8):
            print(chunk.text, end="", flush=True)
        print(client.chat([{"role": "user", "content": "Hi!"}], max_tokens=16).text)

AsyncClient has the same methods as coroutines (generate is an async
iterator). Failures raise tpserve_client.Error with the gRPC status code.
"""
from ._types import Chunk, Completion, Error, Logprob, ModelInfo, TokenLogprob, Tokens, Usage
from .client import Client
from .aio import AsyncClient

__all__ = ["AsyncClient", "Chunk", "Client", "Completion", "Error", "Logprob", "ModelInfo",
           "TokenLogprob", "Tokens", "Usage"]
__version__ = "0.1.0"
