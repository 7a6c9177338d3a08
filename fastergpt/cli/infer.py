"""fastergpt-infer / infer/infer.py: generate text, with timing.

Runs a model in dygraph through FasterGPT (a local HF/PaddleNLP checkpoint, an
exported directory, or the built-in default model) or an exported directory
through the Paddle Inference predictor (--inference_model_dir). --benchmark N
times N runs after a warm-up against the reference Paddle generate().
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from fastergpt.cli.settings_args import add_setting_arguments, settings_from_args
from fastergpt.cli.format_args import add_format_arguments
from fastergpt.settings import over_defaults
from fastergpt.stops import cut_at_stop

BUILTIN_PROMPTS = [
    "The function returns",
    "This module provides",
    "If the file does not exist,",
    "Return a new list",
]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastergpt-infer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_name_or_path", default="default",
                   help="checkpoint dir (HF or PaddleNLP layout), exported dir, or 'default'")
    p.add_argument("--inference_model_dir", help="run an exported directory through paddle.inference")
    p.add_argument("--trust_library", action="store_true",
                   help="load the directory's own operator library even if it is not this "
                        "fastergpt's build (it is code: only for trusted directories)")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    p.add_argument("--prompt_file", help="a text file with one prompt per line")
    p.add_argument("--batch_size", type=int, default=None,
                   help="prompts per call (default: all at once); rows for --start_token")
    p.add_argument("--start_token", help="generate unconditionally from this token (e.g. '<|endoftext|>')")
    p.add_argument("--end_token", help="stop at this token (default: the tokenizer's end token)")
    p.add_argument("--stop", action="append", metavar="TEXT",
                   help="a string that ends a row, matched on the text and not printed (repeatable)")
    p.add_argument("--end_token_ids", metavar="ID,ID",
                   help="more token ids that end a row, besides the end token")
    add_format_arguments(p)
    p.add_argument("--use_fp16_decoding", action="store_true", help="same as --dtype float16")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                   help="gpu: run through fastergpt.Engine's CUDA backend (float32/float16)")
    p.add_argument("--benchmark", type=int, default=0, metavar="N",
                   help="after a warm-up, time N runs of fastergpt and of the reference generate()")
    add_setting_arguments(p)
    return p


def read_prompts(args, tokenizer) -> list:
    if args.prompt_file:
        try:
            with open(args.prompt_file, encoding="utf-8") as f:
                prompts = [line.rstrip("\n") for line in f if line.strip()]
        except OSError as e:
            raise SystemExit(f"error: --prompt_file {args.prompt_file}: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise SystemExit(f"error: --prompt_file {args.prompt_file} is not UTF-8 text "
                             f"(byte {e.start}: {e.reason})") from None
        if not prompts:
            raise SystemExit(f"error: --prompt_file {args.prompt_file} holds no prompt")
        return (args.prompt or []) + prompts
    if args.prompt:
        return args.prompt
    if args.start_token:
        if tokenizer.token_to_id(args.start_token) is None:
            raise SystemExit(f"error: --start_token {args.start_token!r} is not in the vocabulary")
        return [args.start_token] * (args.batch_size or 1)
    return list(BUILTIN_PROMPTS)


def settings_from(args, defaults: dict, tokenizer) -> dict:
    s = over_defaults(defaults, settings_from_args(args))
    if args.end_token:
        eos = tokenizer.token_to_id(args.end_token)
        if eos is None:
            raise SystemExit(f"error: --end_token {args.end_token!r} is not in the vocabulary")
        s["eos_token_id"] = eos
    if s.get("seed") is None:
        s["seed"] = int(np.random.randint(0, 2**31))
    return s


def end_ids_from(text):
    """--end_token_ids "1,2" -> [1, 2]."""
    if text is None:
        return []
    items = [t for t in text.replace(",", " ").split() if t]
    if not items or not all(t.isdigit() for t in items):
        raise SystemExit(f"error: --end_token_ids: expected token ids like 1,2, got {text!r}")
    return [int(t) for t in items]


def check_export_formats(info: dict, dtype, vocab_dtype) -> None:
    """An exported directory runs in the formats it was exported with: --dtype or
    --vocab_dtype asking for others is an error, not ignored."""
    from fastergpt.config import GPTConfig
    from fastergpt.pretrained import vocabulary_dtype
    from fastergpt.quantize import normalize_dtype

    stored = {"--dtype": info["dtype"],
              "--vocab_dtype": vocabulary_dtype(GPTConfig.from_dict(info["model"]), info["dtype"])}
    for flag, given in (("--dtype", dtype), ("--vocab_dtype", vocab_dtype)):
        if given is not None and normalize_dtype(given) != stored[flag]:
            raise ValueError(f"the exported directory holds {stored[flag]} weights where {flag} "
                             f"asks for {given}; leave {flag} out or export again with it")


class Runner:
    """One generate(ids, mask, settings) -> (ids, lengths) over either backend."""

    def __init__(self, args):
        from fastergpt.pretrained import generation_defaults, resolve_model_path
        from fastergpt.tokenizer import Tokenizer

        dtype = "float16" if args.use_fp16_decoding else args.dtype
        self.engine = None
        if args.device == "gpu":  # the NumPy engine's CUDA backend (the Paddle op runs on the CPU)
            from fastergpt.engine import Engine

            self.predictor = None
            path = resolve_model_path(args.inference_model_dir or args.model_name_or_path)
            self.engine = Engine.from_pretrained(path, dtype=dtype, device="gpu",
                                                 vocab_dtype=args.vocab_dtype)
            self.tokenizer = Tokenizer.from_dir(path)
            self.defaults = generation_defaults(path, self.engine.config, self.tokenizer)
            self.source = path
            self.label = f"{path} (fastergpt.Engine on the GPU, {self.engine.weight_format})"
        elif args.inference_model_dir:
            from fastergpt.predictor import Predictor

            self.predictor = Predictor(args.inference_model_dir, trust_library=args.trust_library)
            check_export_formats(self.predictor.info, dtype, args.vocab_dtype)
            self.tokenizer = self.predictor.tokenizer
            self.defaults = self.predictor.defaults
            self.source = args.inference_model_dir
            self.label = f"exported directory {args.inference_model_dir} (Paddle Inference predictor)"
        else:
            from fastergpt.faster_gpt import FasterGPT

            self.predictor = None
            path = resolve_model_path(args.model_name_or_path)
            self.model = FasterGPT.from_pretrained(path, dtype=dtype, vocab_dtype=args.vocab_dtype)
            self.tokenizer = Tokenizer.from_dir(path)
            self.defaults = generation_defaults(path, self.model.config, self.tokenizer)
            self.source = path
            name = "built-in default model" if args.model_name_or_path in (None, "", "default") else str(path)
            self.label = f"{name} (FasterGPT, dygraph)"

    def generate(self, ids, mask, s, stop=None, end_token_ids=None):
        """(ids, lengths, (drafted, accepted) tokens of prompt lookup, or None where the
        exported directory predates that output)."""
        if self.engine is not None:
            out = self.engine.generate(ids, mask, stop=stop, end_token_ids=end_token_ids, **s)
            return (out["ids"], out["lengths"],
                    (out.get("drafted_tokens", 0), out.get("accepted_tokens", 0)))
        if self.predictor is not None:
            out = self.predictor.generate(input_ids=ids, attention_mask=mask, stop=stop,
                                          end_token_ids=end_token_ids, **s)
            counts = (None if out.drafted_tokens is None
                      else (out.drafted_tokens, out.accepted_tokens))
            return out.ids, out.lengths, counts
        out = self.model.generate(ids, mask, stop=stop, end_token_ids=end_token_ids, **s)
        return out.ids.numpy(), out.lengths.numpy(), (out.drafted_tokens, out.accepted_tokens)


def run_benchmark(runner, ids, mask, s, n: int) -> None:
    from fastergpt.pretrained import load_state_dict
    from fastergpt.reference import GPTLMHeadModel, generate

    def timed(fn):
        fn()  # warm-up
        t = []
        for _ in range(n):
            t0 = time.perf_counter()
            out = fn()
            t.append(time.perf_counter() - t0)
        return float(np.mean(t)), out

    fast_s, (out_ids, lengths, _) = timed(lambda: runner.generate(ids, mask, s))
    config, state = load_state_dict(runner.source if runner.predictor is None else runner.predictor.dir)
    ref = GPTLMHeadModel(config)
    ref.load_numpy_state_dict(state)
    ref.eval()
    ref_settings = {k: v for k, v in s.items() if k != "num_threads"}
    ref_s, ref_out = timed(lambda: generate(ref, ids, mask, **ref_settings))
    fast_tokens = int(lengths.sum())
    ref_tokens = int(ref_out.lengths.sum())
    print(f"\nbenchmark: {n} runs after a warm-up, batch {ids.shape[0]}, prompt length {ids.shape[1]}")
    print(f"  fastergpt             {fast_s * 1e3:9.1f} ms/run  {fast_tokens / fast_s:8.1f} tokens/s")
    print(f"  reference generate()  {ref_s * 1e3:9.1f} ms/run  {ref_tokens / ref_s:8.1f} tokens/s")
    print(f"  speed-up (tokens/s)   {(fast_tokens / fast_s) / (ref_tokens / ref_s):9.2f}x")


def main(argv=None) -> int:
    """Exit status 0, or 2 with one line on stderr naming what was wrong."""
    try:
        return _main(argv)
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 2
        raise


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    if args.batch_size is not None and args.batch_size < 1:
        raise SystemExit(f"error: --batch_size must be >= 1, got {args.batch_size}")
    try:
        runner = Runner(args)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tok = runner.tokenizer
    prompts = read_prompts(args, tok)
    s = settings_from(args, runner.defaults, tok)
    stops, end_ids = args.stop or [], end_ids_from(args.end_token_ids)
    print(f"model: {runner.label}")
    print(f"settings: {', '.join(f'{k}={v}' for k, v in s.items())}\n")
    batch = args.batch_size or len(prompts)
    total_tokens, total_time = 0, 0.0
    drafted = accepted = 0  # prompt lookup's, over every batch (None: not reported)
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        try:
            ids, mask = tok.encode_batch(chunk)
            t0 = time.perf_counter()
            out_ids, lengths, counts = runner.generate(ids, mask, s, stops, end_ids)
            total_time += time.perf_counter() - t0
        except (ValueError, RuntimeError) as e:  # RuntimeError: PredictorError
            print(f"error: {e}", file=sys.stderr)
            return 2
        total_tokens += int(lengths.sum())
        if counts is None or drafted is None:
            drafted = accepted = None
        else:
            drafted, accepted = drafted + counts[0], accepted + counts[1]
        R = s.get("num_return_sequences", 1)
        for i, row in enumerate(out_ids):
            prompt = chunk[i // R]
            text = cut_at_stop(tok.decode(row[:lengths[i]]), stops)
            shown = "" if prompt == args.start_token else prompt
            print(f"[{start + i // R}{'.' + str(i % R) if R > 1 else ''}] {shown}\033[1m{text}\033[0m"
                  if sys.stdout.isatty() else f"[{start + i // R}{'.' + str(i % R) if R > 1 else ''}] {shown}{text}")
    print(f"\n{total_tokens} tokens in {total_time * 1e3:.1f} ms: {total_tokens / total_time:.1f} tokens/s")
    if s.get("prompt_lookup_num_tokens", 0) > 0:
        if drafted is None:
            print("prompt lookup: this exported directory does not report its drafts (exported "
                  "before the graph had them as an output)")
        else:
            share = f" ({100 * accepted / drafted:.0f}%)" if drafted else ""
            print(f"prompt lookup: {accepted} of {drafted} drafted tokens accepted{share}")
    if args.benchmark > 0:
        ids, mask = tok.encode_batch(prompts[:batch])
        try:
            run_benchmark(runner, ids, mask, s, args.benchmark)
        except (ValueError, OSError, RuntimeError) as e:
            print(f"error: --benchmark: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
