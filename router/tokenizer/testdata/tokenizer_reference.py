#!/usr/bin/env python3
"""Independent reference outputs for the C++ tokenizer tests.

Every expected value comes from libraries nobody on tpserve wrote:
  bytelevel  Hugging Face `tokenizers` (BPE + the model's pre-tokenizer),
             built from a GGUF vocabulary read with the `gguf` package
  spm        Google `sentencepiece`, with a ModelProto built from a GGUF
             SentencePiece vocabulary (pieces, scores, types; byte_fallback)
  pretok     `tokenizers`' Split(Regex(...)) with the models' published regexes
  chat       `jinja2` rendering the model's chat template the way
             transformers does (trim_blocks, lstrip_blocks, raise_exception)

Usage: tokenizer_reference.py MODE --out OUT.json [options]; see main().
The strings are generated here, seeded, so each run is reproducible.
"""
import argparse
import json
import random
import sys

WORDS = ["hello", "world", "The", "quick", "brown", "fox", "don't", "I'LL", "we've", "it's",
         "they'RE", "you'd", "can't", "Hello", "WORLD", "tokenization", "serving", "tensor",
         "naïve", "café", "résumé", "Straße", "Ærøskøbing", "ﬁne"]
SCRIPTS = ["你好世界", "机器学习模型", "日本語のテキスト", "カタカナ", "한국어 문장", "Привет, мир",
           "Ελληνικά", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีครับ", "ქართული",
           "Tiếng Việt có dấu", "Zażółć gęślą jaźń", "ኢትዮጵያ", "தமிழ்", "ᏣᎳᎩ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "Ⅻ ⅷ",
           "e\u0301", "a\u0308o\u0308", "ﷺ", "\u200b", "\u200d", "\ufeff"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🇩🇪", "🏳️‍🌈", "❤️", "🤖", "✨", "🔥🔥", "🫠", "☃", "⌘", "©®™"]
CODE = ["def f(x):\n    return x**2\n", "for (int i = 0; i < n; ++i) { a[i] += 1; }",
        "{\"key\": [1, 2.5, null], \"b\": true}", "<div class='x'>&nbsp;</div>", "SELECT * FROM t;",
        "x = y // 2  # comment", "#include <vector>\n", "fn main() -> Result<(), E> {}", "$PATH:~/bin",
        "a->b->c", "i++; j--;", "if x != y && z == w:", "\tindented\tline", "`code`", "'''doc'''"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", "\n\n\n", "  \n", " \t ", "\u00a0", "\u3000",
          "\u2009", "\u2028", "\x0b", "\x0c", "\x85", "\r", "    ", "        "]
DIGITS = ["0", "7", "42", "123", "2024", "3.14159", "1,000,000", "-17", "1e-9", "0xFF", "٣٤٥",
          "१२३", "½", "²³", "Ⅳ", "①②", "9999999999", "12:30", "v1.2.3"]
PUNCT = ["!", "?", "...", "!!!", ",", ";", "—", "–", "«", "»", "\"", "'", "''", "'s", "'t", "'re",
         "'ve", "'m", "'ll", "'d", "'S", "'LL", "(", ")", "[]", "{}", "@", "#", "%", "&&", "||",
         "::", "<", ">", "</", "/>", "_", "__init__", "~", "^", "|", "\\", "¿", "¡", "•", "…"]


def random_codepoint(rng):
    while True:
        block = rng.choice([(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF),
                            (0x590, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF),
                            (0x2000, 0x206F), (0x2190, 0x23FF), (0x3000, 0x30FF),
                            (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF),
                            (0x1F300, 0x1FAFF), (0x10000, 0x1007F)])
        cp = rng.randint(*block)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def generate_strings(n, seed, specials):
    """Curated edge cases first, then seeded random mixes."""
    rng = random.Random(seed)
    out = ["", " ", "a", "Hello world", "Hello, world!", " leading space", "trailing space ",
           "  two leading", "tabs\tand\nnewlines\r\n", "\n", "\n\n", " \n ", "   ", "\t\t",
           "don't I'll we've", "DON'T", "1234567890", "3 apples and 12 oranges", "a1b2c3",
           "😀", "👨‍👩‍👧‍👦 family", "你好，世界！", "ok 👍🏽 ok", "x" * 300, " " * 50, "\n" * 20,
           "ab" * 100, "9" * 60, "😀" * 10, "e\u0301\u0301", "\u00a0\u00a0x"]
    for s in specials:
        out += [s, f"{s}user\nHi{s}", f"x{s}", f"{s} {s}", s[:-1] if len(s) > 1 else s]
    pools = [WORDS, SCRIPTS, EMOJI, CODE, SPACES, DIGITS, PUNCT, specials or WORDS]
    weights = [5, 3, 2, 2, 3, 3, 3, 1]
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(1, 12)):
            pool = rng.choices(pools, weights)[0]
            if rng.random() < 0.08:
                parts.append("".join(random_codepoint(rng) for _ in range(rng.randint(1, 6))))
            else:
                parts.append(rng.choice(pool))
            parts.append(rng.choice(["", "", " ", " ", "  ", "\n", "\t"]))
        out.append("".join(parts))
    return out


def read_gguf_vocab(path):
    import gguf
    r = gguf.GGUFReader(path)

    def arr(key, kind):
        if key not in r.fields:
            return None
        f = r.fields[key]
        if kind == "str":
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]

    def scalar(key):
        if key not in r.fields:
            return None
        f = r.fields[key]
        return f.parts[f.data[0]].tolist()[0]

    return {
        "tokens": arr("tokenizer.ggml.tokens", "str"),
        "types": arr("tokenizer.ggml.token_type", "num"),
        "scores": arr("tokenizer.ggml.scores", "num"),
        "merges": arr("tokenizer.ggml.merges", "str"),
        "unk": scalar("tokenizer.ggml.unknown_token_id"),
    }


GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = LLAMA3_RE.replace(r"\p{N}{1,3}", r"\p{N}")


def build_hf_bytelevel(v, pre):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    vocab = {t: i for i, t in enumerate(v["tokens"])}
    merges = [tuple(m.split(" ", 1)) for m in v["merges"]]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=(pre == "llama3")))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if pre == "smollm":
        # SmolLM2 / StarCoder: individual digits, then GPT-2's regex.
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif pre == "gpt2":
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        regex = LLAMA3_RE if pre == "llama3" else QWEN2_RE
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False), byte_level])
    tk.decoder = decoders.ByteLevel()
    added = [AddedToken(t, special=(ty == 3), normalized=False)
             for t, ty in zip(v["tokens"], v["types"] or []) if ty in (3, 4)]
    tk.add_special_tokens([a for a in added if a.special])
    tk.add_tokens([a for a in added if not a.special])
    return tk, [a.content for a in added]


def build_spm(v):
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    m.trainer_spec.model_type = pb.TrainerSpec.BPE
    m.trainer_spec.byte_fallback = True
    m.trainer_spec.unk_id = v["unk"] if v["unk"] is not None else 0
    m.normalizer_spec.name = "identity"
    m.normalizer_spec.add_dummy_prefix = True
    m.normalizer_spec.remove_extra_whitespaces = False
    m.normalizer_spec.escape_whitespaces = True
    kinds = {1: pb.ModelProto.SentencePiece.NORMAL, 2: pb.ModelProto.SentencePiece.UNKNOWN,
             3: pb.ModelProto.SentencePiece.CONTROL, 4: pb.ModelProto.SentencePiece.USER_DEFINED,
             5: pb.ModelProto.SentencePiece.UNUSED, 6: pb.ModelProto.SentencePiece.BYTE}
    for t, s, ty in zip(v["tokens"], v["scores"], v["types"]):
        p = m.pieces.add()
        p.piece, p.score, p.type = t, s, kinds[ty]
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(m.SerializeToString())
    return sp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["bytelevel", "spm", "pretok", "chat"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--gguf")
    ap.add_argument("--pre", default="smollm")
    ap.add_argument("--json_out", help="bytelevel: also save the HF tokenizer.json here")
    ap.add_argument("--n", type=int, default=1200)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--templates", help="chat: JSON file {name: jinja source}")
    a = ap.parse_args()
    result = {}
    if a.mode == "bytelevel":
        v = read_gguf_vocab(a.gguf)
        tk, specials = build_hf_bytelevel(v, a.pre)
        if a.json_out:
            tk.save(a.json_out)
        cases = []
        for s in generate_strings(a.n, a.seed, specials[:6]):
            ids = tk.encode(s, add_special_tokens=False).ids
            cases.append({"text": s, "ids": ids, "decoded": tk.decode(ids, skip_special_tokens=False)})
        result = {"cases": cases}
    elif a.mode == "spm":
        v = read_gguf_vocab(a.gguf)
        sp = build_spm(v)
        cases = []
        for s in generate_strings(a.n, a.seed, []):
            ids = sp.encode(s)
            cases.append({"text": s, "ids": ids, "decoded": sp.decode(ids)})
        result = {"cases": cases}
    elif a.mode == "pretok":
        from tokenizers import Regex, pre_tokenizers
        cases = []
        splitters = {name: pre_tokenizers.Split(Regex(rx), behavior="isolated", invert=False)
                     for name, rx in [("gpt2", GPT2_RE), ("llama3", LLAMA3_RE), ("qwen2", QWEN2_RE)]}
        smollm = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                          splitters["gpt2"]])
        for s in generate_strings(a.n, a.seed, []):
            c = {"text": s}
            for name, sp in list(splitters.items()) + [("smollm", smollm)]:
                c[name] = [p for p, _ in sp.pre_tokenize_str(s)]
            cases.append(c)
        result = {"cases": cases}
    elif a.mode == "chat":
        result = render_chats(a)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False)


def conversations(rng, n):
    """Seeded conversations: with and without a system prompt, alternating
    and not, multilingual, multi-line, padded, empty, template-like text."""
    contents = ["Hi!", "What is 2+2?", "  padded with spaces  ", "\nleading newline",
                "line one\nline two\n", "", "你好，请介绍一下你自己。", "Привет 👋🏽",
                "Use {{ braces }} and {% tags %} literally", "<|im_end|> inside text",
                "code:\n```python\nprint('x')\n```", "tab\tseparated", "émoji 🤖✨",
                "A longer message. " * 5, "'quotes' and \"double quotes\"", "\\backslash"]
    systems = ["You are a helpful assistant.", "Answer briefly.", "  Be nice.  ", ""]
    out = [
        [{"role": "user", "content": "Hello"}],
        [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
         {"role": "user", "content": "Bye"}],
        [{"role": "user", "content": "Hi"}, {"role": "user", "content": "again"}],
        [{"role": "assistant", "content": "I start"}],
        [],
    ]
    while len(out) < n:
        conv = []
        if rng.random() < 0.4:
            conv.append({"role": "system", "content": rng.choice(systems)})
        turns = rng.randint(1, 6)
        for t in range(turns):
            role = "user" if t % 2 == 0 else "assistant"
            if rng.random() < 0.08:
                role = rng.choice(["user", "assistant", "tool"])
            conv.append({"role": role, "content": rng.choice(contents)})
        out.append(conv)
    return out


def render_chats(a):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    # transformers' apply_chat_template environment.
    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = tojson
    with open(a.templates, encoding="utf-8") as f:
        templates = json.load(f)
    if a.gguf:
        import gguf
        r = gguf.GGUFReader(a.gguf)
        f = r.fields["tokenizer.chat_template"]
        templates["model"] = bytes(f.parts[f.data[0]]).decode("utf-8")
    convs = conversations(random.Random(a.seed), a.n)
    out = []
    for name, src in templates.items():
        t = env.from_string(src)
        for conv in convs:
            for gen in (False, True):
                try:
                    text = t.render(messages=conv, add_generation_prompt=gen,
                                    bos_token="<s>", eos_token="</s>")
                    err = False
                except jinja2.exceptions.TemplateError:
                    text, err = "", True
                out.append({"template": name, "messages": conv, "add_generation_prompt": gen,
                            "text": text, "error": err})
    return {"renders": out, "templates": templates}


if __name__ == "__main__":
    sys.exit(main())
