#!/usr/bin/env python3
"""Writes the small checked-in seed corpus for tokenizer_fuzz.cc.

Usage: python3 fuzz/tokenizer/make_seeds.py   (rewrites fuzz/tokenizer/corpus/)
The first byte of each seed picks the fuzzed operation (see tokenizer_fuzz.cc).
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = {
    "bpe_hello": b"\x00Hello, world! It's 2024.",
    "bpe_specials": "\x00<|im_start|>user\nHi 👋🏽<|im_end|>\n<|im_start|>assistant\n".encode(),
    "bpe_multilingual": "\x00你好，世界！ Привет мир  مرحبا \t\n\n  12345 ½ ٣".encode(),
    "bpe_code": b"\x00def f(x):\n    return x ** 2  # comment\n\n\n",
    "bpe_invalid": b"\x00ok \xff\xfe bad \xc3",
    "spm_text": " leading space  and   runs\tof whitespace".encode().join([b"\x01", b""]),
    "spm_unicode": "\x01 Ærøskøbing 😀 </s> <s> 日本語".encode(),
    "decode_ids": b"\x02" + struct.pack("<8H", 1, 9690, 28, 2, 49151, 49160, 105, 57346),
    "decode_spm_ids": b"\x07" + struct.pack("<6H", 1, 15043, 3186, 259, 2, 32005),
    "chat": b"\x03You are terse.\x00Hi there\x00Hello!\x00Bye",
    "chat_invalid": b"\x03sys\x00bad \xc3\x28\x00ok",
    "template_chatml": (b"\x04{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                        b"message['content'] | trim + '<|im_end|>\\n'}}{% endfor %}"
                        b"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    "template_loopcontrols": (b"\x04{% for m in messages | selectattr('role', 'ne', 'x') %}"
                              b"{% if loop.index > 2 %}{% break %}{% endif %}{% if not m.content %}{% continue %}"
                              b"{% endif %}{% generation %}{{ m | tojson(indent=2) }}{% endgeneration %}{% endfor %}"
                              b"{{ messages | map(attribute='role') | join(',') }}{{ strftime_now('%Y') | length }}"),
    "template_features": (b"\x04{%- set ns = namespace(n=0) -%}{% for m in messages if m.role != 'x' %}"
                          b"{% set ns.n = ns.n + loop.index %}{{ m.content[1:-1] ~ (m | tojson) }}"
                          b"{% elif %}{% endfor %}{{ ns.n // 2 }}{{ raise_exception('no') if ns.n > 99 }}"
                          b"{# c #}{{ 'a,b'.split(',') | join('-') | upper }}{{ range(3) | list }}"),
}


def main():
    out = os.path.join(HERE, "corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
