"""The serving path with --backend=cuda, run on the CUDA emulator
(worker/tpserve-worker_emu, docs/cuda_emulator.md): router + CUDA workers
(TP=1, and TP=2 on two emulated devices) serving a generated F32 model answer
streamed requests, and every output equals what a CPU worker gives for the
same requests. Greedy requests and
seeded sampling with penalties (sampled on the device by the CUDA worker, on
the host by the CPU one). And a TP=2 CUDA group whose rank is stopped past
the heartbeat bound during streams reforms: the survivor leaves the epoch with
collectives queued on its stream, joins the next, and every stream ends once
with the unfaulted tokens."""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc

from cluster import Cluster, _runfile, generate_concurrently, parse_metrics, stubs

_, gpb = stubs("generation")

PROMPTS = ["The capital of France is", "Once upon a time", "1, 2, 3, 4,"]


def requests():
    """tpserve_client generate() keyword arguments: greedy, then seeded sampling."""
    out = [dict(request_id=f"greedy{i}", prompt=text, max_tokens=8, temperature=0.0)
           for i, text in enumerate(PROMPTS)]
    out.append(dict(request_id="sampled", prompt=PROMPTS[1], max_tokens=8, temperature=0.8,
                    top_p=0.9, seed=5, repetition_penalty=1.2, frequency_penalty=0.3))
    return out


def generate(cluster):
    results = []
    with cluster.client(timeout=600) as client:
        for req in requests():
            ids, last = [], None
            for chunk in client.generate(**req):
                ids.extend(chunk.token_ids)
                if chunk.finish_reason:
                    last = chunk
            results.append((ids, last))
    return results


def make_model():
    tmp = tempfile.mkdtemp(prefix="tpserve_cuda_emu_")
    model = os.path.join(tmp, "tiny_f32.gguf")
    subprocess.run([_runfile("tests/testmodel/make_test_model"), f"--out={model}", "--dtype=f32",
                    "--hidden=128", "--layers=2", "--heads=4", "--kv_heads=2", "--ffn=256",
                    "--vocab=4096", "--seed=3"], check=True)
    return model


def streams_with_fault(cluster, fault=None, max_tokens=48):
    """Four concurrent greedy streams (cluster.generate_concurrently); fault()
    runs on another thread once 16 tokens arrived."""
    count = [0]
    fired = threading.Event()

    def chaos():
        while count[0] < 16 and not fired.wait(0.01):
            pass
        if not fired.is_set():
            fault()

    chaos_thread = threading.Thread(target=chaos) if fault is not None else None
    if chaos_thread is not None:
        chaos_thread.start()

    def tick():
        count[0] += 1

    prompts = [f"{PROMPTS[i % 3]} {i}" for i in range(4)]
    results = generate_concurrently(gpb.GenerationStub(cluster.channel()), prompts, max_tokens,
                                    on_token=tick)
    fired.set()
    if chaos_thread is not None:
        chaos_thread.join()
    return results


class CudaBackendEmulatedTest(unittest.TestCase):
    def test_a_stopped_rank_fences_the_group_and_it_reforms(self):
        model = make_model()
        os.environ["TPSERVE_CUDA_EMU_DEVICES"] = "2"
        with Cluster(world_size=2, model=model, worker="worker/tpserve-worker_emu",
                     worker_args=["--backend=cuda", "--collective_timeout=10s"],
                     router_args=["--heartbeat_interval=500ms", "--recovery_timeout=90s",
                                  "--heartbeat_timeout=1500ms"]) as c:
            want = streams_with_fault(c)
            pids = [c.proc("worker0").pid, c.proc("worker1").pid]

            def stop_rank1():
                w1 = c.proc("worker1")
                w1.send_signal(signal.SIGSTOP)
                time.sleep(4)  # past heartbeat interval + timeout
                w1.send_signal(signal.SIGCONT)

            got = streams_with_fault(c, fault=stop_rank1)
            log = c.logs()
            for i, ((_, w, _), (code, g, usage)) in enumerate(zip(want, got)):
                self.assertEqual(code, grpc.StatusCode.OK, f"stream {i}: {usage}\n{log[-4000:]}")
                self.assertEqual(usage.completion_tokens, 48, f"stream {i}")  # each token once
                self.assertEqual(g, w, f"stream {i} differs from the unfaulted output")
            for name in ("worker0", "worker1"):  # neither rank crashed or restarted
                self.assertIsNone(c.proc(name).poll(), f"{name} exited\n{log[-4000:]}")
            self.assertEqual([c.proc("worker0").pid, c.proc("worker1").pid], pids)
            self.assertIn("recovered in", c.log_text("router"), log[-4000:])

    def test_cuda_worker_matches_cpu_worker(self):
        model = make_model()
        # Both backends default to a bf16 KV cache (the same bits on both);
        # the f32 cache is compared too, at TP=1.
        want = {}
        for kv_dtype in ("auto", "f32"):
            with Cluster(world_size=1, model=model,
                         worker_args=["--backend=cpu", f"--kv_dtype={kv_dtype}"]) as c:
                want[kv_dtype] = generate(c)
        # Two emulated devices: TP=2 goes through the multi-rank CUDA path
        # (device all-reduces, vocab slices gathered and sampled on rank 0's
        # device) over the emulator's stand-in for NCCL.
        os.environ["TPSERVE_CUDA_EMU_DEVICES"] = "2"
        for world, kv_dtype in ((1, "auto"), (2, "auto"), (1, "f32")):
            with Cluster(world_size=world, model=model, worker="worker/tpserve-worker_emu",
                         worker_args=["--backend=cuda", f"--kv_dtype={kv_dtype}"]) as c:
                got = generate(c)
                log = c.logs()
                metrics, _ = parse_metrics(c.scrape(c.worker_metrics_ports[0]))
            graph_steps = sum(v for (name, _), v in metrics.items()
                              if name == "tpserve_worker_cuda_graph_steps_total")
            # Decode steps replay CUDA graphs at every world size; at TP=2
            # the graphs hold the emulated NCCL collectives.
            self.assertGreater(graph_steps, 0, f"TP={world}: no decode step replayed a graph")
            self.assertIn("tpserve CUDA emulator on the CPU", log)  # the CUDA backend really ran
            # The worker's start-up line names its KV cache's element type.
            self.assertIn(" tokens, BF16 (" if kv_dtype == "auto" else " tokens, F32 (", log)
            for req, (w, g) in zip(requests(), zip(want[kv_dtype], got)):
                rid = req["request_id"]
                print(f"TP={world} KV {kv_dtype} {rid}: cpu {w[0]} cuda {g[0]}")
                self.assertIsNotNone(g[1], f"{rid}: no final response")
                self.assertEqual(g[1].request_id, rid)
                self.assertEqual(len(g[0]), 8, rid)
                self.assertEqual(g[0], w[0],
                                 f"TP={world} KV {kv_dtype} {rid}: CUDA worker tokens differ from CPU")

if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
