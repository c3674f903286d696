#!/usr/bin/env python3
"""ptxas_report.py: its parser and checks on made-up reports laid out as
ptxas -v writes them (CUDA 13), then the check of this build's reports
against kernels/cuda/ptxas_baseline.tsv.

    bazel test //kernels/cuda:ptxas_report_test

Arguments (from the BUILD rule): the baseline, then the reports."""
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ptxas_report  # noqa: E402

# _ZN1a6KernelILi1EEEvv is a::Kernel<1>(), _ZN1a6KernelILi2EEEvv a::Kernel<2>().
REPORT = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_ZN1a6KernelILi1EEEvv' for 'sm_80'
ptxas info    : Function properties for _ZN1a6KernelILi1EEEvv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 4096 bytes smem
ptxas info    : Function properties for _ZN1a6HelperEv
    16 bytes stack frame, 12 bytes spill stores, 12 bytes spill loads
ptxas info    : Compiling entry function '_ZN1a6KernelILi2EEEvv' for 'sm_90a'
ptxas info    : Compiling entry function '_ZN1a6KernelILi2EEEvv' for 'sm_90a'
ptxas info    : Function properties for _ZN1a6KernelILi2EEEvv
    40 bytes stack frame, 8 bytes spill stores, 48 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers
"""


class ParseTest(unittest.TestCase):
    def setUp(self):
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(REPORT)
        self.path = f.name
        self.kernels = ptxas_report.readable(ptxas_report.parse([self.path]))

    def tearDown(self):
        os.unlink(self.path)

    def test_entries_with_their_figures(self):
        self.assertEqual(
            self.kernels[("void a::Kernel<1>()", "sm_80")],
            {"registers": 40, "stack": 0, "spill_stores": 0, "spill_loads": 0})
        self.assertEqual(
            self.kernels[("void a::Kernel<2>()", "sm_90a")],
            {"registers": 255, "stack": 40, "spill_stores": 8, "spill_loads": 48})

    def test_device_functions_are_not_entries(self):
        # A non-inlined device function has its own frame: not an entry.
        self.assertEqual(len(self.kernels), 2)
        self.assertEqual(self.kernels[("void a::Kernel<1>()", "sm_80")]["spill_stores"], 0)

    def check(self, baseline):
        with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
            f.write(baseline)
        try:
            return ptxas_report.check(f.name, self.kernels)
        finally:
            os.unlink(f.name)

    def test_a_listed_spill_passes(self):
        saved = ptxas_report.REGISTER_RULES
        ptxas_report.REGISTER_RULES = []
        try:
            self.assertEqual(self.check("# comment\nvoid a::Kernel<2>()\tsm_90a\t8\t48\n"), [])
            # A new spill, a changed one, a fixed one and a vanished kernel each fail.
            self.assertIn("the baseline says none", self.check("")[0])
            self.assertIn("the baseline says 4, 48",
                          self.check("void a::Kernel<2>()\tsm_90a\t4\t48\n")[0])
            fixed = self.check("void a::Kernel<2>()\tsm_90a\t8\t48\n"
                               "void a::Kernel<1>()\tsm_80\t4\t4\n")
            self.assertEqual(len(fixed), 1)
            self.assertIn("spills 0 bytes stored, 0 loaded; the baseline says 4, 4", fixed[0])
            gone = self.check("void a::Kernel<2>()\tsm_90a\t8\t48\nvoid a::Old()\tsm_80\t4\t4\n")
            self.assertIn("not built any more", gone[0])
        finally:
            ptxas_report.REGISTER_RULES = saved

    def test_register_rules(self):
        saved = ptxas_report.REGISTER_RULES
        try:
            ptxas_report.REGISTER_RULES = [("a::Kernel<2>", "sm_90a", 255, "why")]
            self.assertEqual(self.check("void a::Kernel<2>()\tsm_90a\t8\t48\n"), [])
            ptxas_report.REGISTER_RULES = [("a::Kernel<2>", "sm_90a", 168, "why")]
            self.assertIn("255 registers, not 168: why",
                          self.check("void a::Kernel<2>()\tsm_90a\t8\t48\n")[0])
            ptxas_report.REGISTER_RULES = [("a::Missing", "sm_90a", 168, "why")]
            self.assertIn("no such kernel", self.check("void a::Kernel<2>()\tsm_90a\t8\t48\n")[0])
        finally:
            ptxas_report.REGISTER_RULES = saved

    def test_no_reports_is_a_failure(self):
        self.assertIn("no entry functions", ptxas_report.check("/dev/null", {})[0])


class ThisBuildTest(unittest.TestCase):
    def test_reports_match_the_baseline(self):
        baseline, reports = ARGS[0], ARGS[1:]
        kernels = ptxas_report.readable(ptxas_report.parse(reports))
        problems = ptxas_report.check(baseline, kernels)
        self.assertEqual(problems, [], "\n".join(problems))


if __name__ == "__main__":
    ARGS = sys.argv[1:]
    if not ARGS:
        sys.exit("usage: ptxas_report_test.py BASELINE REPORT...")
    unittest.main(argv=sys.argv[:1])
