#!/usr/bin/env python3
"""Encodes strings with Hugging Face `tokenizers` (an independent BPE).

    encode_with_tokenizers.py TOKENIZER_JSON IN_JSON OUT_JSON
IN_JSON: a list of strings. OUT_JSON: a list of id lists (no special tokens added).
"""
import json
import sys

from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
texts = json.load(open(sys.argv[2]))
ids = [tok.encode(t, add_special_tokens=False).ids for t in texts]
json.dump(ids, open(sys.argv[3], "w"))
