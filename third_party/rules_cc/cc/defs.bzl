"""Re-exports Bazel 4's native C++ rules as @rules_cc//cc:defs.bzl.

Bazel 4's own @bazel_tools loads these names from @rules_cc; Debian ships a rules_cc
that is too new for Bazel 4, so this shim stands in for it.
"""

cc_binary = native.cc_binary
cc_import = native.cc_import
cc_library = native.cc_library
cc_proto_library = native.cc_proto_library
cc_test = native.cc_test
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
fdo_prefetch_hints = native.fdo_prefetch_hints
fdo_profile = native.fdo_profile
objc_import = native.objc_import
objc_library = native.objc_library
