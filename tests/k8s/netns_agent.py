"""A helper process that acts inside one network namespace for
run_manifests_test.py: the node (kubelet probes), an outside client, or the
monitoring namespace's Prometheus. It reads one JSON request per line on
stdin and answers one JSON line on stdout; names resolve through the
namespace's /etc/hosts (ip netns exec binds /etc/netns/<ns>/hosts there).

    ip netns exec tps1-node python3 netns_agent.py
    {"op": "grpc_health", "target": "198.18.1.2:50051", "service": ""}
    -> {"status": "SERVING"}   or {"error": "UNIMPLEMENTED", "detail": "..."}

Ops: grpc_health, tcp, chat (tpserve.v1.Generation/Generate with a chat
prompt; over TLS with "tls_ca_file", with an API key in "api_key"), http (GET, or POST of a JSON body), exit.
"""
import json
import os
import socket
import sys
import urllib.error
import urllib.request

import grpc

sys.path.insert(0, os.environ["TPSERVE_INTEGRATION_DIR"])
from cluster import stubs  # noqa: E402  (tests/integration: protoc-generated stubs)

HEALTH = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def grpc_health(req):
    service = req.get("service", "").encode()
    body = (b"\x0a" + bytes([len(service)]) + service) if service else b""
    with grpc.insecure_channel(req["target"]) as ch:
        check = ch.unary_unary("/grpc.health.v1.Health/Check")
        try:
            resp = check(body, timeout=req.get("timeout", 5))
        except grpc.RpcError as e:
            return {"error": e.code().name, "detail": e.details()}
    return {"status": HEALTH.get(resp[1] if len(resp) >= 2 else 0, "UNKNOWN")}


def tcp(req):
    try:
        with socket.create_connection((req["host"], req["port"]), timeout=req.get("timeout", 3)):
            return {"ok": True}
    except OSError as e:
        return {"ok": False, "detail": str(e)}


def _channel(req):
    """Plaintext, or TLS trusting the PEM CA file req["tls_ca_file"]."""
    if not req.get("tls_ca_file"):
        return grpc.insecure_channel(req["target"])
    with open(req["tls_ca_file"], "rb") as f:
        return grpc.secure_channel(req["target"], grpc.ssl_channel_credentials(f.read()))


def chat(req):
    pb, gpb = stubs("generation")
    msg = pb.GenerateRequest(request_id="k8s-run", max_tokens=req["max_tokens"])
    for m in req["messages"]:
        msg.chat.messages.add(role=m["role"], content=m["content"])
    text, ids, finish = [], [], 0
    with _channel(req) as ch:
        try:
            metadata = [("authorization", f"Bearer {req['api_key']}")] if req.get("api_key") else []
            for r in gpb.GenerationStub(ch).Generate(msg, timeout=req.get("timeout", 120),
                                                     metadata=metadata):
                text.append(r.text)
                ids.extend(r.token_ids)
                finish = finish or r.finish_reason
        except grpc.RpcError as e:
            return {"error": e.code().name, "detail": e.details()}
    return {"text": "".join(text), "token_ids": ids,
            "finish_reason": pb.FinishReason.Name(finish)}


def http(req):
    data = json.dumps(req["json"]).encode() if "json" in req else None
    r = urllib.request.Request(req["url"], data=data,
                               headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(r, timeout=req.get("timeout", 60)) as resp:
            return {"status": resp.status, "body": resp.read().decode()}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode()}
    except OSError as e:
        return {"error": str(e)}


OPS = {"grpc_health": grpc_health, "tcp": tcp, "chat": chat, "http": http}


def main():
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "exit":
            break
        try:
            out = OPS[req["op"]](req)
        except Exception as e:  # reported to the test, which fails with it
            out = {"error": type(e).__name__, "detail": str(e)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
