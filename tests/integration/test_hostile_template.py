"""A GGUF whose chat template loops without end, or nests 10,000 levels, is
refused when the router loads it: the router logs a clear refusal within a
few seconds, keeps starting (text and token-id prompts still work) and never
hangs or crashes. The GGUFs are written at test time with the `gguf` package
(llama.cpp's gguf-py, .venv): the default model's tokenizer metadata with the
hostile template in place of its own, no tensors (the router reads only the
tokenizer)."""
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import gguf

from cluster import MODEL, _runfile

LOOP_FOREVER = ("{% for a in range(1000000) %}{% for b in range(1000000) %}{% for c in "
                "range(1000000) %}{{ a }}{% endfor %}{% endfor %}{% endfor %}")
NEST_10000 = "{% if true %}" * 10000 + "x" + "{% endif %}" * 10000
EXPLODE = "{% for i in range(1000000) %}{{ 'x' * 100000 }}{% endfor %}"


_READER = None


def read(path):
    with open(path) as f:
        return f.read()


def write_gguf(path, chat_template):
    global _READER
    if _READER is None:
        _READER = gguf.GGUFReader(MODEL)
    reader = _READER
    writer = gguf.GGUFWriter(path, arch="llama")
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer.ggml."):
            continue
        vtype = gguf.GGUFValueType(field.types[0])
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = gguf.GGUFValueType(field.types[1])
            if sub == gguf.GGUFValueType.STRING:
                values = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
            else:
                values = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_array(key, values)  # element type inferred: str, int -> INT32
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_key_value(key, bytes(field.parts[field.data[0]]).decode("utf-8"), vtype)
        else:
            writer.add_key_value(key, field.parts[field.data[0]].tolist()[0], vtype)
    writer.add_chat_template(chat_template)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


class HostileTemplateTest(unittest.TestCase):
    def start_router(self, model):
        tmp = tempfile.mkdtemp(prefix="tpserve_hostile_")
        port_file = os.path.join(tmp, "ports.json")
        log_path = os.path.join(tmp, "router.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen([_runfile("router/tpserve-router"), f"--model={model}",
                                     "--host=127.0.0.1", "--port=0", "--metrics_port=0",
                                     "--rendezvous_port=0", f"--port_file={port_file}"],
                                    stdout=log, stderr=subprocess.STDOUT)
        return proc, port_file, log_path

    def check_refused(self, name, template, expected):
        path = os.path.join(tempfile.mkdtemp(prefix="tpserve_gguf_"), f"{name}.gguf")
        write_gguf(path, template)
        start = time.time()
        proc, port_file, log_path = self.start_router(path)
        try:
            # The port file is written after the template was loaded or refused.
            while not os.path.exists(port_file):
                self.assertIsNone(proc.poll(), read(log_path))
                self.assertLess(time.time() - start, 30, f"{name}: router still loading")
                time.sleep(0.05)
            took = time.time() - start
            log = read(log_path)
            self.assertIn("chat prompts disabled: the model's chat template is", log)
            self.assertIn(expected, log)
            self.assertIsNone(proc.poll(), "the router must keep running")
            print(f"{name}: refused in {took:.2f} s")
            self.assertLess(took, 15)
        finally:
            proc.kill()  # still waiting for workers, where it does not handle SIGTERM yet
            proc.wait(timeout=30)
            shutil.rmtree(os.path.dirname(port_file), ignore_errors=True)
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)

    def test_endless_loop_is_refused_at_load(self):
        self.check_refused("loop", LOOP_FOREVER, "does not end")

    def test_ten_thousand_levels_of_nesting_are_refused_at_load(self):
        self.check_refused("nest", NEST_10000, "nested too deeply")

    def test_exploding_output_is_refused_at_load(self):
        self.check_refused("explode", EXPLODE, "refused")


if __name__ == "__main__":
    unittest.main()
