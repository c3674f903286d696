"""proto → C++ messages + gRPC stubs with Debian's protoc and grpc_cpp_plugin.

Usage:
    cc_grpc_proto_library(
        name = "worker_cc_proto",
        src = "worker.proto",
        deps = [":common_cc_proto"],  # other cc_grpc_proto_library targets it imports
    )
The generated headers are included as "proto/tpserve/v1/worker.pb.h" and
"proto/tpserve/v1/worker.grpc.pb.h".
"""

def cc_grpc_proto_library(name, src, deps = [], proto_deps = [], visibility = None):
    base = src[:-len(".proto")]
    outs = [base + ext for ext in [".pb.h", ".pb.cc", ".grpc.pb.h", ".grpc.pb.cc"]]
    native.genrule(
        name = name + "_gen",
        srcs = [src] + proto_deps,
        outs = outs,
        cmd = " ".join([
            "protoc",
            "--proto_path=.",
            "--proto_path=$(GENDIR)",
            "--cpp_out=$(GENDIR)",
            "--grpc_out=$(GENDIR)",
            "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin",
            "$(location %s)" % src,
        ]),
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        copts = ["-Wno-unused-parameter"],
        deps = deps + ["//third_party:grpc", "//third_party:protobuf"],
        visibility = visibility,
    )
