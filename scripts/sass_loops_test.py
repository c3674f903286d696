#!/usr/bin/env python3
"""sass_loops.py on SASS laid out as `nvdisasm -c -g` prints it (the layout of
nvdisasm 13.0's output for kernels/cuda/decode_persistent.cu; the
instructions made up). bazel test //scripts:sass_loops_test"""
import contextlib
import io
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sass_loops  # noqa: E402

# An entry function with an outer loop holding a local-memory-free inner loop,
# and a callee (not inlined) whose one loop reloads a spilled value.
SASS = """\t.headerflags\t@"EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"
.text._Z6KernelPf:
        /*0000*/                   MOV R1, c[0x0][0x28] ;
\t//## File "/src/kernels/cuda/k.cu", line 10
.L_x_0:
        /*0010*/                   LDG.E R2, desc[UR4][R4.64] ;
.L_x_1:
\t//## File "/src/kernels/cuda/k.cu", line 12
        /*0020*/                   FFMA R3, R2, R2, R3 ;
        /*0030*/                   SHFL.BFLY PT, R5, R3, 0x1, 0x1f ;
        /*0040*/              @!P0 BRA `(.L_x_1) ;
\t//## File "/src/kernels/cuda/k.cu", line 14
        /*0050*/                   STG.E desc[UR4][R4.64], R3 ;
        /*0060*/                   @P1 BRA `(.L_x_0) ;
        /*0070*/                   BRA `(.L_x_2) ;
.L_x_2:
        /*0080*/                   EXIT ;
$_Z6KernelPf$_Z5PhaseIiEvPf:
\t//## File "/src/kernels/cuda/phase.cuh", line 40
        /*0000*/                   STL [R1+0x10], R16 ;
.L_x_3:
\t//## File "/src/kernels/cuda/phase.cuh", line 41
        /*0010*/                   LDL R16, [R1+0x10] ;
        /*0020*/                   LD.E R2, desc[UR4][R16.64] ;
\t//## File "/src/kernels/cuda/paged.cuh", line 7
        /*0030*/                   @!P2 LDL.64 R18, [R1+0x18] ;
        /*0040*/              @!P0 BRA `(.L_x_3) ;
        /*0050*/                   RET.REL.NODEC R20 `(_Z6KernelPf) ;
"""


def run(*args):
    with tempfile.NamedTemporaryFile("w", suffix=".sass", delete=False) as f:
        f.write(SASS)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            sass_loops.main([f.name] + list(args))
    finally:
        os.unlink(f.name)
    return out.getvalue().splitlines()


class ParseTest(unittest.TestCase):
    def test_functions_labels_and_lines(self):
        found = sass_loops.functions(SASS.splitlines(keepends=True))
        self.assertEqual([n for n, _, _ in found], ["_Z6KernelPf", "$_Z6KernelPf$_Z5PhaseIiEvPf"])
        instructions, labels = found[0][1], found[0][2]
        self.assertEqual(len(instructions), 9)
        self.assertEqual(labels, {".L_x_0": 1, ".L_x_1": 2, ".L_x_2": 8})
        self.assertEqual(instructions[2], ("FFMA R3, R2, R2, R3", ("/src/kernels/cuda/k.cu", 12)))
        self.assertEqual(sass_loops.opcode("@!P2 LDL.64 R18, [R1+0x18]"), "LDL")

    def test_innermost_backward_branches_only(self):
        found = sass_loops.functions(SASS.splitlines(keepends=True))
        # .L_x_0..6 holds .L_x_1..4; the forward BRA to .L_x_2 is no loop.
        self.assertEqual(sass_loops.loops(found[0][1], found[0][2]), [(2, 4)])
        self.assertEqual(sass_loops.loops(found[1][1], found[1][2]), [(1, 4)])


class TableTest(unittest.TestCase):
    def test_counts_and_sources_per_loop(self):
        rows = run()
        self.assertEqual(rows[0], "| function | loop (instructions) | size | memory and other ops "
                                  "| source |")
        self.assertEqual(len(rows), 4)
        self.assertIn("| 2-4 | 3 | SHFL 1 | k.cu:12-12 |", rows[2])
        self.assertIn(" > ", rows[3])  # entry > callee
        self.assertIn("| 1-4 | 4 | LDL 2 LD 1 | phase.cuh:41-41, paged.cuh:7-7 |", rows[3])

    def test_local_and_function_filters(self):
        self.assertEqual(len(run("--local")), 3)
        self.assertIn("LDL 2", run("--local")[2])
        self.assertEqual(len(run("--function", "Phase")), 3)
        self.assertEqual(len(run("--function", "Nothing")), 2)

    def test_input_without_functions_is_named(self):
        with tempfile.NamedTemporaryFile("w", suffix=".sass", delete=False) as f:
            f.write("not nvdisasm output\n")
        try:
            with self.assertRaises(SystemExit) as e:
                sass_loops.main([f.name])
            self.assertIn("no function in", str(e.exception))
        finally:
            os.unlink(f.name)


if __name__ == "__main__":
    unittest.main()
