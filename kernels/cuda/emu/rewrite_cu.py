#!/usr/bin/env python3
"""Rewrites a .cu file into C++ the host compiler accepts, for the CUDA emulator.

    rewrite_cu.py in.cu out.cc

Kernel launches `k<<<grid, block, smem, stream>>>(args)` are not C++; they
become `::tpserve_emu::Launcher("k", grid, block, smem, stream)(&k)(args)`.
Static `__shared__` declarations get a registration (StaticShared) so the
emulator poisons them at every block start. Everything else is left to the
macros of kernels/cuda/emu/emu.h (dynamic
shared memory goes through kernels/cuda/shared_memory.cuh). A #line directive keeps compiler messages
pointing at the original file.
"""
import re
import sys


def kernel_name_start(text, end):
    """Start index of the kernel expression that ends just before `end`."""
    i = end
    while i > 0 and text[i - 1].isspace():
        i -= 1
    if i > 0 and text[i - 1] == ">":  # template arguments: match <...> backwards
        depth = 0
        while i > 0:
            i -= 1
            if text[i] == ">":
                depth += 1
            elif text[i] == "<":
                depth -= 1
                if depth == 0:
                    break
        while i > 0 and text[i - 1].isspace():
            i -= 1
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_:"):
        i -= 1
    return i


def rewrite_launches(text):
    out = []
    pos = 0
    while True:
        start = text.find("<<<", pos)
        if start < 0:
            out.append(text[pos:])
            return "".join(out)
        close = text.find(">>>", start)
        if close < 0:
            sys.exit("rewrite_cu.py: unterminated <<< launch")
        name_start = kernel_name_start(text, start)
        if name_start < pos:
            sys.exit("rewrite_cu.py: cannot find the kernel before <<<")
        kernel = text[name_start:start].strip()
        config = text[start + 3:close].strip()
        plain = re.sub(r"\s+", " ", kernel)
        out.append(text[pos:name_start])
        out.append('::tpserve_emu::Launcher("%s", %s)(&%s)' % (plain, config, kernel))
        pos = close + 3


STATIC_SHARED = re.compile(
    r"^(?P<indent>[ \t]*)__shared__\s+(?P<decl>[^;{}()]*?)\b(?P<name>\w+)\s*(?P<dims>(\[[^\]]*\]\s*)*);",
    re.M)


def register_static_shared(text):
    """Each static `__shared__ T name[...];` also registers `name` with the
    emulator, which poisons it at every block start (emu.h StaticShared)."""
    def sub(m):
        return ("%s static thread_local ::tpserve_emu::StaticShared tps_emu_shared_%s(&%s, sizeof(%s));"
                % (m.group(0), m.group("name"), m.group("name"), m.group("name")))
    return STATIC_SHARED.sub(sub, text)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src) as f:
        text = f.read()
    text = rewrite_launches(text)
    text = register_static_shared(text)
    with open(dst, "w") as f:
        f.write('#line 1 "%s"\n' % src)
        f.write(text)


if __name__ == "__main__":
    main()
