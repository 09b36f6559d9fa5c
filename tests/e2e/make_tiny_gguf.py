"""Write a tiny random-weight llama model as a GGUF file, for llama.cpp's server in the e2e suite.

    python tests/e2e/make_tiny_gguf.py OUT.gguf [--seed N]

Llama architecture, 2 layers, 64-wide, with a small byte-level vocabulary (SentencePiece style:
``<unk>``, ``<s>``, ``</s>``, the 256 byte tokens ``<0x00>``..``<0xFF>``, then the printable ASCII
characters and ``▁`` as pieces of their own). Any text tokenises (unknown characters fall back to
bytes); what it generates is nonsense, but the server, its streaming and its grammar-constrained
tool calls are real. Three hand-set directions shape what it says (at temperature 1, through
``--chat_format chatml-function-calling``): ``<unk>``, ``<s>`` and the byte tokens are pushed down,
so it writes printable ASCII (no broken UTF-8 on the wire); ``</s>`` gets a lead on a direction
every position shares, so answers end after about ten characters (seen: 1 to 45 in 100 tries);
and ``</s>`` is barred right after a newline, the prompt's last character, so no answer is empty.
Needs ``gguf`` and ``numpy`` (the e2e LiteLLM venv has both: scripts/e2e-setup.sh). Deterministic
for a given seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import gguf
import numpy as np

N_EMBD = 64
N_HEAD = 4
N_LAYER = 2
N_FF = 128
N_CTX = 32768
OUTPUT_SCALE = 0.25  # logits of a few units: sampling stays random (no loops)
EOS_BIAS = 0.7  # </s> logit lead is about 3.6 times this: sets how soon answers end


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces = ["\u2581", *(chr(c) for c in range(33, 127))]  # ▁ (space) and printable ASCII
    tokens += pieces
    types += [gguf.TokenType.NORMAL] * len(pieces)
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(pieces))]
    return tokens, scores, [int(t) for t in types]


def write(path: Path, seed: int, eos_bias: float = EOS_BIAS) -> None:
    rng = np.random.default_rng(seed)
    tokens, scores, types = vocabulary()
    n_vocab = len(tokens)
    head_dim = N_EMBD // N_HEAD

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("anyllm-e2e-tiny")
    w.add_context_length(N_CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    def tensor(name: str, *shape: int, scale: float = 0.02) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    embedding = rng.standard_normal((n_vocab, N_EMBD)).astype(np.float32)
    embedding[:, 0] = 4.0  # a direction every position shares, read by </s> below
    embedding[:, 1] = 0.0
    embedding[3 + 0x0A, 1] = 40.0  # a direction only "\n" has (a prompt's last character)
    w.add_tensor("token_embd.weight", embedding)
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, dtype=np.float32))
    output = rng.standard_normal((n_vocab, N_EMBD)).astype(np.float32) * OUTPUT_SCALE
    output[: 3 + 256] = 0.0
    output[: 3 + 256, 0] = -4.0  # unknown, BOS and byte tokens: (almost) never sampled
    output[2] = rng.standard_normal(N_EMBD) * OUTPUT_SCALE  # </s>: like any character,
    output[2, 0] += eos_bias  # plus a lead on the shared direction, so answers end early,
    output[2, 1] = -10.0  # but never right after "\n": no empty answers
    w.add_tensor("output.weight", output)
    for i in range(N_LAYER):
        p = f"blk.{i}"
        w.add_tensor(f"{p}.attn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        tensor(f"{p}.attn_q.weight", N_EMBD, N_EMBD)
        tensor(f"{p}.attn_k.weight", N_EMBD, N_EMBD)
        tensor(f"{p}.attn_v.weight", N_EMBD, N_EMBD)
        tensor(f"{p}.attn_output.weight", N_EMBD, N_EMBD)
        w.add_tensor(f"{p}.ffn_norm.weight", np.ones(N_EMBD, dtype=np.float32))
        tensor(f"{p}.ffn_gate.weight", N_FF, N_EMBD)
        tensor(f"{p}.ffn_up.weight", N_FF, N_EMBD)
        tensor(f"{p}.ffn_down.weight", N_EMBD, N_FF)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--eos-bias", type=float, default=EOS_BIAS)
    args = parser.parse_args(argv)
    write(args.out, args.seed, args.eos_bias)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
