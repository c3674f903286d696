#!/usr/bin/env python3
"""Writes the checked-in seed corpus of template_fuzz.cc: "<template>\\0<args>"
where args are a flags byte, then messages split at \\x01, role and content
split at \\x02 (the raw-engine globals are built from the same bytes).

Usage: python3 fuzz/template/make_seeds.py   (rewrites fuzz/template/corpus/)
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CONV = b"\x01system\x02Be brief.\x01user\x02Hi <|im_end|> there\x01assistant\x02Hello!\x01user\x02  bye  "
SEEDS = {
    "chatml": (b"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
               b"message['content'] + '<|im_end|>\\n'}}{% endfor %}"
               b"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"),
    "trimmed": (b"{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
                b"<|end_header_id|>\\n\\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"),
    "transform": b"{% for m in messages %}{{ m.content | upper }}|{{ m.content[::-1] }}{% endfor %}",
    "system_first": (b"{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
                     b"{% set loop_messages = messages[1:] %}{% else %}{% set loop_messages = messages %}"
                     b"{% endif %}{% for m in loop_messages %}{% if loop.first and sys is defined %}"
                     b"<<SYS>>{{ sys }}<</SYS>>{% endif %}[INST] {{ m['content'] }} [/INST]{% endfor %}"),
    "globals": b"{{ x }}{{ messages | tojson }}{% for k in x %}{{ k }}{% endfor %}{{ x is mapping }}",
    "loop": b"{% for a in range(300) %}{% for b in range(300) %}{% endfor %}{% endfor %}",
    "nest": b"{% if true %}" * 80 + b"x" + b"{% endif %}" * 80,
    "explode": b"{% set ns = namespace(s='ab') %}{% for i in range(24) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "raise": b"{{ raise_exception('no') }}",
}


def main():
    out = os.path.join(HERE, "corpus")
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    for name, template in SEEDS.items():
        for flags in (b"\x00", b"\x01"):
            with open(os.path.join(out, f"{name}_{flags[0]}"), "wb") as f:
                f.write(template + b"\x00" + flags + CONV)
    print(len(os.listdir(out)), "seeds")


if __name__ == "__main__":
    main()
