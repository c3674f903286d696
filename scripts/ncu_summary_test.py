#!/usr/bin/env python3
"""ncu_summary.py on CSVs laid out as Nsight Compute's --csv output (columns
and section metric names as in docs/data/gpu/h100_2026-12-05; the values are
made up). bazel test //scripts:ncu_summary_test"""
import contextlib
import io
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ncu_summary  # noqa: E402

HEADER = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
          '"Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit",'
          '"Metric Value"\n')
WGMMA = ("void tpserve::kernels::cuda::(anonymous namespace)::GemmWgmmaKernel<256>"
         "(const unsigned short *, const unsigned short *, const float *, float *, int, int, "
         "int, long)")
ATTN = ("void (anonymous namespace)::TensorCoreAttentionKernel<128, unsigned short>"
        "((anonymous namespace)::AttentionArgs<unsigned short>)")


def row(launch, kernel, section, metric, unit, value, grid="(22, 16, 1)", block="(256, 1, 1)"):
    return ('"%s","7","decode_bench","127.0.0.1","%s","1","7","%s","%s","0","9.0","%s","%s",'
            '"%s","%s"\n' % (launch, kernel, block, grid, section, metric, unit, value))


def run(args, text):
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write("==PROF== Connected to process 7\n| bench: a program row |\n" + text)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            sys.argv = ["ncu_summary.py"] + [a if a != "CSV" else f.name for a in args]
            ncu_summary.main()
    finally:
        os.unlink(f.name)
    return out.getvalue().splitlines()


class ShortNameTest(unittest.TestCase):
    def test_drops_return_type_namespaces_and_parameters(self):
        self.assertEqual(ncu_summary.short_name(WGMMA), "GemmWgmmaKernel<256>")
        self.assertEqual(ncu_summary.short_name(ATTN), "TensorCoreAttentionKernel<128, unsigned short>")
        self.assertEqual(ncu_summary.short_name("AddRmsNormKernel"), "AddRmsNormKernel")
        self.assertEqual(ncu_summary.short_name("a::K<b::c<d>, 2>(int)"), "K<b::c<d>, 2>")


class LaunchesTest(unittest.TestCase):
    def test_one_row_per_launch_in_order_with_units_and_blanks(self):
        text = HEADER + "".join([
            row(0, WGMMA, "GPU Speed Of Light Throughput", "Duration", "usecond", "1,234.50"),
            row(0, WGMMA, "GPU Speed Of Light Throughput", "Compute (SM) Throughput", "%", "61.2"),
            row(0, WGMMA, "GPU Speed Of Light Throughput", "DRAM Throughput", "%", "8.5"),
            row(0, WGMMA, "Occupancy", "Achieved Occupancy", "%", "12.4"),
            row(0, WGMMA, "Launch Statistics", "Registers Per Thread", "register/thread", "168"),
            row(1, ATTN, "GPU Speed Of Light Throughput", "Duration", "msecond", "1.5",
                grid="(32, 1, 16)", block="(128, 1, 1)"),
            row(1, ATTN, "Warp State Statistics", "Warp Cycles Per Issued Instruction", "cycle",
                "9.75", grid="(32, 1, 16)", block="(128, 1, 1)"),
        ])
        lines = run(["--launches", "CSV"], text)
        self.assertEqual(lines[0], "| # | kernel | grid | block | us | SM % | memory % | DRAM % | "
                         "occupancy % | registers | cycles per issue |")
        self.assertEqual(lines[2], "| 0 | GemmWgmmaKernel<256> | (22, 16, 1) | (256, 1, 1) | "
                         "1234.50 | 61.2 |  | 8.5 | 12.4 | 168 |  |")
        self.assertEqual(lines[3], "| 1 | TensorCoreAttentionKernel<128, unsigned short> | "
                         "(32, 1, 16) | (128, 1, 1) | 1500.00 |  |  |  |  |  | 9.75 |")
        self.assertEqual(lines[4], "| total | 2 launches | | | 2734.5 | | | | | | |")

    def test_no_kernels_is_an_error(self):
        with self.assertRaises(SystemExit) as e:
            run(["--launches", "CSV"], HEADER)
        self.assertIn("no kernels", str(e.exception))


class PerStepTest(unittest.TestCase):
    def test_time_per_step_by_kernel(self):
        text = HEADER + "".join([
            row(0, WGMMA, "Command line profiler metrics", "gpu__time_duration.sum", "nsecond", "3,000"),
            row(1, ATTN, "Command line profiler metrics", "gpu__time_duration.sum", "usecond", "1"),
            row(2, WGMMA, "Command line profiler metrics", "gpu__time_duration.sum", "usecond", "5"),
            row(3, ATTN, "Command line profiler metrics", "gpu__time_duration.sum", "usecond", "1"),
        ])
        lines = run(["CSV", "2"], text)
        self.assertEqual(lines[2], "| GemmWgmmaKernel<256> | 1.0 | 4.00 | 4.0 | 80.0% |")
        self.assertEqual(lines[3], "| TensorCoreAttentionKernel<128, unsigned short> | 1.0 | 1.00 | 1.0 | 20.0% |")
        self.assertEqual(lines[4], "| total | 2.0 | | 5.0 | |")

    def test_unknown_unit_is_named(self):
        text = HEADER + row(0, WGMMA, "x", "gpu__time_duration.sum", "furlong", "1")
        with self.assertRaises(SystemExit) as e:
            run(["CSV", "1"], text)
        self.assertIn("furlong", str(e.exception))


if __name__ == "__main__":
    unittest.main()
