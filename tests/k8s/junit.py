"""Runs a unittest module and writes its cases as JUnit XML to
$XML_OUTPUT_FILE, so Bazel and scripts/test.sh count each case (skipped ones
as skipped, with their reason) instead of one pass for the whole target.

    if __name__ == "__main__":
        junit.main()
"""
import os
import sys
import time
import unittest
import xml.etree.ElementTree as ET


class _Result(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cases = []
        self._t0 = 0.0

    def startTest(self, test):
        self._t0 = time.time()
        super().startTest(test)

    def _record(self, test, kind, text=""):
        self.cases.append((test.id(), time.time() - self._t0, kind, text))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)


def main():
    module = sys.modules["__main__"]
    # Test names from the command line or `bazel test --test_filter=...`,
    # e.g. RunManifestsTest.test_cpu.
    names = sys.argv[1:] or [n for n in os.environ.get("TESTBRIDGE_TEST_ONLY", "").split(",") if n]
    loader = unittest.defaultTestLoader
    suite = loader.loadTestsFromNames(names, module) if names else loader.loadTestsFromModule(module)
    runner = unittest.TextTestRunner(verbosity=2, resultclass=_Result, stream=sys.stdout)
    result = runner.run(suite)
    path = os.environ.get("XML_OUTPUT_FILE")
    if path:
        suites = ET.Element("testsuites")
        ts = ET.SubElement(suites, "testsuite", name=os.path.basename(module.__file__),
                           tests=str(len(result.cases)))
        for name, secs, kind, text in result.cases:
            case = ET.SubElement(ts, "testcase", name=name, time=f"{secs:.3f}")
            if kind != "pass":
                ET.SubElement(case, kind, message=text.splitlines()[0] if text else "").text = text
        ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
    sys.exit(0 if result.wasSuccessful() else 1)
