"""Train fastergpt's default model from scratch, on CPU, and export it in the HF GPT-2 layout.

Steps (all deterministic for a given seed, corpus and thread count):

1. Build the corpus with ``tools/build_corpus.py`` (standard-library
   docstrings + help() topics of the running CPython) and its train /
   held-out split. A further ~5% of the *train* documents (a second hash
   bucket, :func:`is_validation`) is kept aside as the validation set used
   to pick the best checkpoint, so the held-out split is never looked at
   during training.
2. Train a byte-level BPE tokenizer (``tokenizers``) on the remaining train
   documents; ``<|endoftext|>`` (id 0) separates documents and serves as
   bos, eos and pad.
3. Train a GPT-2 (``fastergpt.reference.GPTLMHeadModel``) on random windows
   of the packed token stream ``eot doc eot doc ... eot`` with AdamW, linear
   warmup then cosine decay, global-norm gradient clipping. Train loss is
   printed every ``--log-every`` steps and validation loss/perplexity every
   ``--eval-every`` steps, with elapsed time. ``--work-dir`` receives the
   latest state (for ``--resume``) and the best-so-far weights at every
   evaluation, so an interrupted run keeps its best result.
4. Export the best checkpoint to ``--out`` (default ``fastergpt/default_model``):
   config.json, model.safetensors (float16, HF names, no lm_head when tied),
   tokenizer.json, vocab.json, merges.txt, generation_config.json and a
   README.md model card with the measured numbers (held-out perplexity of
   the float32 weights before saving and of the shipped float16 weights,
   both by ``fastergpt.evaluation.perplexity``).

The shipped model was produced by::

    python tools/train_default_model.py --max-steps 2400 --minutes 45

``--export-only`` re-exports the best checkpoint of an existing work dir.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

EOT = "<|endoftext|>"
PROMPT = "The function returns"
TEST_FILE = os.path.join(ROOT, "tests", "test_default_model.py")
TEST_EVAL_TOKENS = 20000  # the shipped-model test scores the first this many held-out tokens


def is_validation(text: str) -> bool:
    """Second hash bucket of a train document (disjoint from build_corpus's held-out bucket)."""
    digest = hashlib.sha1(text.encode("utf-8")).digest()
    return int.from_bytes(digest[8:16], "big") % 20 == 0


def load_corpus(path=None) -> dict:
    """The corpus dict {train, heldout}; built in a subprocess (it imports the whole stdlib)."""
    if path is None:
        path = os.path.join(ROOT, "build", "default_model_corpus.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "build_corpus.py"),
                        "--quiet", "--out", path], check=True, cwd=ROOT)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def train_tokenizer(docs, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(docs, trainer, length=len(docs))
    return tok


def init_weights(model, seed: int, n_layer: int) -> None:
    """GPT-2 initialisation from numpy: N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)),
    biases 0, LayerNorm weight 1 / bias 0."""
    rng = np.random.RandomState(seed)
    for name, p in model.named_parameters():
        shape = tuple(p.shape)
        if ".ln_" in name or name.startswith("transformer.ln_f"):
            value = np.ones(shape) if name.endswith("weight") else np.zeros(shape)
        elif name.endswith("bias"):
            value = np.zeros(shape)
        else:
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
            value = rng.standard_normal(shape) * std
        p.set_value(value.astype(np.float32))


def lr_at(step: int, max_steps: int, peak: float, warmup: int, min_ratio: float) -> float:
    """Linear warmup over `warmup` steps, then cosine decay to min_ratio * peak at max_steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def batch_at(stream: np.ndarray, step: int, seed: int, batch: int, seq: int) -> np.ndarray:
    """Random windows [batch, seq + 1] of the train stream; a pure function of (seed, step)."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, stream.size - seq - 1, size=batch)
    return np.stack([stream[s:s + seq + 1] for s in starts]).astype(np.int64)


def param_count(config) -> int:
    e, l, v, p, i = config.n_embd, config.n_layer, config.vocab_size, config.n_positions, config.inner_size
    per_layer = 4 * e + (e * 3 * e + 3 * e) + (e * e + e) + (e * i + i) + (i * e + e)
    return v * e + p * e + l * per_layer + 2 * e + (0 if config.tie_word_embeddings else v * e)


def hf_config_dict(config) -> dict:
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.n_positions,
        "n_ctx": config.n_positions,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": config.inner_size,
        "activation_function": config.activation_function,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "tie_word_embeddings": config.tie_word_embeddings,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "torch_dtype": "float16",
    }


def test_ppl_bound():
    """PPL_BOUND from tests/test_default_model.py (the number the model card must state)."""
    try:
        with open(TEST_FILE, encoding="utf-8") as f:
            m = re.search(r"^PPL_BOUND\s*=\s*([0-9.]+)", f.read(), re.M)
        return float(m.group(1)) if m else None
    except OSError:
        return None


# --------------------------------------------------------------------------- training


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "fastergpt", "default_model"),
                    help="export directory (default: fastergpt/default_model)")
    ap.add_argument("--work-dir", default=os.path.join(ROOT, "build", "default_model_train"),
                    help="checkpoints, tokenizer and learning curve (default: build/default_model_train)")
    ap.add_argument("--corpus", help="a corpus JSON from build_corpus.py --out (default: build it now)")
    ap.add_argument("--minutes", type=float, default=45.0,
                    help="wall-clock budget for the training loop; stops early, keeping the best")
    ap.add_argument("--max-steps", type=int, default=2400, help="steps of the LR schedule")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab-size", type=int, default=4096)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-positions", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2, help="CPU math threads")
    ap.add_argument("--resume", action="store_true", help="continue from --work-dir/last.*")
    ap.add_argument("--export-only", action="store_true", help="export --work-dir's best checkpoint")
    return ap.parse_args(argv)


def log(msg: str) -> None:
    print(msg, flush=True)


def prepare(args):
    """Corpus, splits, tokenizer and token streams (the tokenizer is cached in the work dir)."""
    from tokenizers import Tokenizer

    from fastergpt.evaluation import encode_documents

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import build_corpus

    corpus = load_corpus(args.corpus)
    fit_docs = [d for d in corpus["train"] if not is_validation(d)]
    val_docs = [d for d in corpus["train"] if is_validation(d)]
    tok_path = os.path.join(args.work_dir, "tokenizer.json")
    if (args.resume or args.export_only) and os.path.exists(tok_path):
        tok = Tokenizer.from_file(tok_path)
    else:
        tok = train_tokenizer(fit_docs, args.vocab_size)
        tok.save(tok_path)
    eot = tok.token_to_id(EOT)
    streams = {
        "train": encode_documents(tok, fit_docs, eot),
        "val": encode_documents(tok, val_docs, eot),
        "heldout": encode_documents(tok, corpus["heldout"], eot),
    }
    info = {"corpus": build_corpus.stats(corpus),
            "fit_documents": len(fit_docs), "val_documents": len(val_docs),
            "fit_characters": sum(map(len, fit_docs)), "val_characters": sum(map(len, val_docs)),
            "tokens": {k: int(v.size) for k, v in streams.items()}}
    return corpus, tok, eot, streams, info


def make_model(args, vocab_size: int, eot: int):
    import paddle

    from fastergpt.config import GPTConfig
    from fastergpt.reference.model import GPTLMHeadModel

    config = GPTConfig(vocab_size=vocab_size, n_positions=args.n_positions, n_embd=args.n_embd,
                       n_layer=args.n_layer, n_head=args.n_head, n_inner=4 * args.n_embd,
                       activation_function="gelu_new", tie_word_embeddings=True,
                       bos_token_id=eot, eos_token_id=eot, pad_token_id=eot).validate()
    paddle.seed(args.seed)
    model = GPTLMHeadModel(config)
    init_weights(model, args.seed, config.n_layer)
    return config, model


def train(args, streams, config, model, tok) -> dict:
    import paddle
    import paddle.nn.functional as F

    from fastergpt.evaluation import negative_log_likelihood

    decay_names = {n for n, p in model.named_parameters()
                   if len(p.shape) == 2 and "wpe" not in n}
    name_of = {p.name: n for n, p in model.named_parameters()}
    sched_lr = paddle.optimizer.lr.LambdaDecay(
        learning_rate=args.lr,
        lr_lambda=lambda s: lr_at(s, args.max_steps, 1.0, args.warmup, args.min_lr_ratio))
    opt = paddle.optimizer.AdamW(
        learning_rate=sched_lr, beta1=0.9, beta2=0.95, epsilon=1e-8,
        parameters=model.parameters(), weight_decay=args.weight_decay,
        apply_decay_param_fun=lambda pname: name_of.get(pname, pname) in decay_names,
        grad_clip=paddle.nn.ClipGradByGlobalNorm(args.grad_clip))

    wd = args.work_dir
    state = {"step": 0, "train_seconds": 0.0, "best_val_loss": None, "best_step": None,
             "curve": [], "evals": []}
    if args.resume and os.path.exists(os.path.join(wd, "last.json")):
        with open(os.path.join(wd, "last.json")) as f:
            state = json.load(f)
        model.set_state_dict(paddle.load(os.path.join(wd, "last.pdparams")))
        opt.set_state_dict(paddle.load(os.path.join(wd, "last.pdopt")))
        log(f"resumed at step {state['step']} ({state['train_seconds'] / 60:.1f} min trained)")

    seq, bsz = config.n_positions, args.batch_size
    train_stream = streams["train"]
    val_stream = streams["val"]
    tokens_per_step = bsz * seq
    log(f"train tokens {train_stream.size}, val tokens {val_stream.size}, "
        f"{tokens_per_step} tokens/step, max {args.max_steps} steps "
        f"({args.max_steps * tokens_per_step / train_stream.size:.1f} epochs), budget {args.minutes} min")

    def evaluate(step):
        t = time.time()
        nll, n = negative_log_likelihood(model, val_stream, block_size=seq, stride=seq)
        entry = {"step": step, "val_loss": nll, "val_ppl": math.exp(nll), "tokens": n,
                 "minutes": state["train_seconds"] / 60}
        state["evals"].append(entry)
        improved = state["best_val_loss"] is None or nll < state["best_val_loss"]
        if improved:
            state["best_val_loss"], state["best_step"] = nll, step
            np.savez(os.path.join(wd, "best.npz.tmp.npz"), **model.state_dict_numpy())
            os.replace(os.path.join(wd, "best.npz.tmp.npz"), os.path.join(wd, "best.npz"))
        paddle.save(model.state_dict(), os.path.join(wd, "last.pdparams"))
        paddle.save(opt.state_dict(), os.path.join(wd, "last.pdopt"))
        with open(os.path.join(wd, "last.json.tmp"), "w") as f:
            json.dump(state, f)
        os.replace(os.path.join(wd, "last.json.tmp"), os.path.join(wd, "last.json"))
        log(f"eval  step {step:5d} | val loss {nll:.4f} ppl {math.exp(nll):8.2f} | "
            f"best {state['best_val_loss']:.4f} @ {state['best_step']}"
            f"{' (saved)' if improved else ''} | eval {time.time() - t:.1f}s | "
            f"elapsed {state['train_seconds'] / 60:.1f} min")

    model.train()
    step = state["step"]
    if step == 0:
        evaluate(0)
    sched_lr.last_epoch = step - 1
    sched_lr.step()
    window_loss, window_n, t_window = 0.0, 0, time.time()
    t_last = time.time()
    stopped_by = "max_steps"
    while step < args.max_steps:
        if state["train_seconds"] >= args.minutes * 60:
            stopped_by = "minutes"
            break
        batch = paddle.to_tensor(batch_at(train_stream, step, args.seed, bsz, seq))
        logits, _ = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape([-1, config.vocab_size]),
                               batch[:, 1:].reshape([-1, 1]))
        loss.backward()
        opt.step()
        opt.clear_grad()
        lr_now = sched_lr.get_lr()
        sched_lr.step()
        step += 1
        now = time.time()
        state["train_seconds"] += now - t_last
        t_last = now
        state["step"] = step
        window_loss += float(loss)
        window_n += 1
        if step % args.log_every == 0 or step == args.max_steps:
            dt = (time.time() - t_window) / window_n
            state["curve"].append({"step": step, "train_loss": window_loss / window_n,
                                   "minutes": state["train_seconds"] / 60})
            log(f"train step {step:5d}/{args.max_steps} | loss {window_loss / window_n:.4f} | "
                f"lr {lr_now:.2e} | {dt:.2f} s/step {tokens_per_step / dt:6.0f} tok/s | "
                f"elapsed {state['train_seconds'] / 60:.1f} min")
            window_loss, window_n, t_window = 0.0, 0, time.time()
        if step % args.eval_every == 0 or step == args.max_steps:
            evaluate(step)  # its time counts: train_seconds is the loop's wall-clock time
            t_window = time.time()
    if state["evals"][-1]["step"] != step:
        evaluate(step)
    state["stopped_by"] = stopped_by
    state["tokens_seen"] = step * tokens_per_step
    with open(os.path.join(wd, "last.json"), "w") as f:
        json.dump(state, f)
    return state


# --------------------------------------------------------------------------- export


def export(args, info, state, tok, config, heldout_stream) -> dict:
    from safetensors.numpy import save_file

    from fastergpt.evaluation import load_default_model, negative_log_likelihood
    from fastergpt.reference import generate
    from fastergpt.reference.model import GPTLMHeadModel

    out = args.out
    os.makedirs(out, exist_ok=True)
    best = dict(np.load(os.path.join(args.work_dir, "best.npz")))
    fp32_model = GPTLMHeadModel(config)
    fp32_model.load_numpy_state_dict(best)
    fp32_model.eval()

    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hf_config_dict(config), f, indent=2)
        f.write("\n")
    tensors = {name: np.ascontiguousarray(value.astype(np.float16)) for name, value in sorted(best.items())}
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    tok.save(os.path.join(out, "tokenizer.json"))
    tok.model.save(out)  # vocab.json, merges.txt
    gen = {"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id,
           "pad_token_id": config.pad_token_id, "do_sample": True, "top_k": 40, "top_p": 0.95,
           "temperature": 0.8, "repetition_penalty": 1.1, "max_new_tokens": 64}
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump(gen, f, indent=2)
        f.write("\n")

    shipped, _, _ = load_default_model("float16", path=out)
    results = {}
    for label, model in (("fp32", fp32_model), ("fp16", shipped)):
        nll, n = negative_log_likelihood(model, heldout_stream)
        nll20, n20 = negative_log_likelihood(model, heldout_stream[:TEST_EVAL_TOKENS])
        results[label] = {"loss": nll, "ppl": math.exp(nll), "tokens": n,
                          "loss_20k": nll20, "ppl_20k": math.exp(nll20)}
        log(f"held-out {label}: loss {nll:.4f} ppl {math.exp(nll):.2f} over {n} tokens; "
            f"first {TEST_EVAL_TOKENS} tokens: ppl {math.exp(nll20):.2f}")

    prompt_ids = np.array([tok.encode(PROMPT).ids])
    greedy = generate(shipped, prompt_ids, max_new_tokens=40, eos_token_id=config.eos_token_id)
    samples = {"greedy": PROMPT + tok.decode(greedy.ids[0][:greedy.lengths[0]].tolist())}
    sampled = generate(shipped, np.repeat(prompt_ids, 3, 0), max_new_tokens=48,
                       decode_strategy="sampling", top_k=gen["top_k"], top_p=gen["top_p"],
                       temperature=gen["temperature"], repetition_penalty=gen["repetition_penalty"],
                       eos_token_id=config.eos_token_id, seed=0)
    samples["sampled"] = [PROMPT + tok.decode(row[:n].tolist())
                          for row, n in zip(sampled.ids, sampled.lengths)]
    log("greedy: " + samples["greedy"])
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    write_card(args, info, state, config, results, samples, size, gen)
    return {"results": results, "samples": samples, "safetensors_bytes": size}


def write_card(args, info, state, config, results, samples, size, gen) -> None:
    import paddle

    from fastergpt.machine import cpu_model
    import tokenizers

    c = info["corpus"]
    n_params = param_count(config)
    bound = test_ppl_bound()
    ppl20 = results["fp16"]["ppl_20k"]
    bound_line = (f"`tests/test_default_model.py` requires the shipped (float16) weights to reach "
                  f"perplexity **< {bound:g}** on the first {TEST_EVAL_TOKENS:,} held-out tokens "
                  f"(measured: {ppl20:.2f})." if bound is not None else
                  "(tests/test_default_model.py not found: no bound recorded)")
    evals = state["evals"]
    keep = [e for e in evals if e["step"] % (args.eval_every * 2) == 0 or e is evals[-1]]
    curve_rows = []
    train_by_step = {p["step"]: p["train_loss"] for p in state["curve"]}
    for e in keep:
        tl = train_by_step.get(e["step"])
        curve_rows.append(f"| {e['step']} | {e['minutes']:.1f} | "
                          f"{'-' if tl is None else f'{tl:.3f}'} | {e['val_loss']:.3f} | {e['val_ppl']:.1f} |")
    steps = state["step"]
    tokens_seen = steps * args.batch_size * config.n_positions
    epochs = tokens_seen / info["tokens"]["train"]
    cmd = (f"python tools/train_default_model.py --max-steps {args.max_steps} --minutes {args.minutes:g}")
    extra = []
    defaults = parse_args([])
    for key in ("seed", "vocab_size", "n_layer", "n_embd", "n_head", "n_positions", "batch_size",
                "lr", "min_lr_ratio", "warmup", "weight_decay", "grad_clip", "eval_every",
                "threads"):
        if getattr(args, key) != getattr(defaults, key):
            extra.append(f"--{key.replace('_', '-')} {getattr(args, key)}")
    if extra:
        cmd += " " + " ".join(extra)
    sampled = "\n".join(f"    {i + 1}. {json.dumps(s)}" for i, s in enumerate(samples["sampled"]))
    text = f"""# fastergpt default model

A small GPT-2 that the fastergpt project trained itself, on CPU, from text that
ships with every CPython installation, so that `fastergpt` can generate
readable English with no download. It writes Python-documentation-flavoured
prose; it knows nothing else. It is a demo and test model, not a useful
language model.

## Corpus

The English documentation strings of the CPython {c['python']} standard library
plus the `help()` topics it ships in `pydoc_data.topics`, extracted from the
running interpreter by `tools/build_corpus.py` (no network): every public
stdlib module (walked with `pkgutil`, skipping private modules, test suites,
GUI toolkits, IDLE and modules with import side effects), and `inspect.getdoc`
of each module, its public classes and functions and their methods;
whitespace-normalised, deduplicated, in sorted module order. Platform:
`{c['platform']}`; corpus SHA-256 `{c['sha256']}`.

| split | documents | characters | words | tokens |
|---|---:|---:|---:|---:|
| train (fit) | {info['fit_documents']:,} | {info['fit_characters']:,} | | {info['tokens']['train']:,} |
| train (validation, picks the checkpoint) | {info['val_documents']:,} | {info['val_characters']:,} | | {info['tokens']['val']:,} |
| train total | {c['train']['documents']:,} | {c['train']['characters']:,} | {c['train']['words']:,} | |
| held-out (`sha1(doc) % 20 == 0`) | {c['heldout']['documents']:,} | {c['heldout']['characters']:,} | {c['heldout']['words']:,} | {info['tokens']['heldout']:,} |

The held-out split is used only for the numbers below, never during training.
The corpus is derived from CPython's documentation (PSF License).

## Tokenizer

Byte-level BPE trained with `tokenizers` {tokenizers.__version__} on the train
(fit) documents: vocabulary {config.vocab_size}, no prefix space;
`<|endoftext|>` (id {config.eos_token_id}) separates documents and is the bos,
eos and pad token. Files: `tokenizer.json`, `vocab.json`, `merges.txt`.

## Architecture

GPT-2 (`model_type: gpt2`, `GPT2LMHeadModel` in Hugging Face terms):
{config.n_layer} layers, n_embd {config.n_embd}, {config.n_head} heads,
n_inner {config.inner_size}, n_positions {config.n_positions}, `gelu_new`,
LayerNorm eps {config.layer_norm_epsilon:g}, tied input/output embeddings.
**{n_params:,} parameters** ({n_params / 1e6:.2f} M). `model.safetensors`
holds them in float16 with Hugging Face names ({size / 1e6:.2f} MB; no
`lm_head.weight`, it is tied to `transformer.wte.weight`).

## Training

- Hardware: {cpu_model()}, {args.threads} CPU threads (shared with other work),
  PaddlePaddle {paddle.__version__} (CPU), float32.
- Data: random {config.n_positions}-token windows of the packed stream
  `<|endoftext|> doc <|endoftext|> doc ...`; batch {args.batch_size}
  ({args.batch_size * config.n_positions:,} tokens/step).
- AdamW (betas 0.9/0.95, weight decay {args.weight_decay:g} on matrices), peak LR
  {args.lr:g}, {args.warmup} warmup steps, cosine decay to {args.min_lr_ratio:g} x peak at
  step {args.max_steps}; gradient clipping at global norm {args.grad_clip:g}; seed {args.seed}.
- Ran **{steps:,} steps** in **{state['train_seconds'] / 60:.1f} minutes** of training
  (stopped by: {state.get('stopped_by', 'max_steps')}); {tokens_seen:,} tokens seen
  ({epochs:.1f} epochs of the fit split). The exported weights are the
  checkpoint with the lowest validation loss: step {state['best_step']}
  (validation loss {state['best_val_loss']:.4f}, perplexity {math.exp(state['best_val_loss']):.2f}).

Learning curve (validation: non-overlapping {config.n_positions}-token windows):

| step | minutes | train loss | val loss | val ppl |
|---:|---:|---:|---:|---:|
""" + "\n".join(curve_rows) + f"""

## Evaluation

Held-out split, {results['fp32']['tokens']:,} scored tokens,
`fastergpt.evaluation.perplexity` (sliding {config.n_positions}-token windows,
stride {config.n_positions // 2}, each token scored once; float32 compute):

| weights | held-out loss (nats/token) | held-out perplexity | first {TEST_EVAL_TOKENS:,} tokens ppl |
|---|---:|---:|---:|
| float32, before saving | {results['fp32']['loss']:.4f} | {results['fp32']['ppl']:.2f} | {results['fp32']['ppl_20k']:.2f} |
| float16, as shipped | {results['fp16']['loss']:.4f} | {results['fp16']['ppl']:.2f} | {results['fp16']['ppl_20k']:.2f} |

{bound_line}

Greedy continuation of `{PROMPT!r}` (40 tokens, shipped weights):

    {json.dumps(samples['greedy'])}

Sampled with `generation_config.json` (top_k {gen['top_k']}, top_p {gen['top_p']},
temperature {gen['temperature']}, repetition penalty {gen['repetition_penalty']}, seed 0):

{sampled}

## Retraining

From the repository root, offline, on CPython {c['python']}:

    {cmd}

(`--work-dir` defaults to `build/default_model_train`, which receives the
tokenizer, the latest state for `--resume` and the best checkpoint; an
interrupted run can be finished with `--resume` or exported as-is with
`--export-only`). The run is deterministic for a given corpus, seed and
step count; a `--minutes` budget that cuts the run short makes the result
depend on the machine's speed.
"""
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(text)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import paddle

    paddle.set_device("cpu")
    try:
        paddle.base.core.set_num_threads(args.threads)
    except AttributeError:
        pass
    np.random.seed(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)
    t0 = time.time()
    corpus, tok, eot, streams, info = prepare(args)
    log(f"corpus: {json.dumps(info)}")
    config, model = make_model(args, tok.get_vocab_size(), eot)
    log(f"model: {json.dumps(hf_config_dict(config))}, {param_count(config):,} parameters")
    if args.export_only:
        with open(os.path.join(args.work_dir, "last.json")) as f:
            state = json.load(f)
    else:
        state = train(args, streams, config, model, tok)
    with open(os.path.join(args.work_dir, "args.json"), "w") as f:
        json.dump(vars(args), f, indent=2)
    result = export(args, info, state, tok, config, streams["heldout"])
    log(f"exported to {args.out} ({result['safetensors_bytes'] / 1e6:.2f} MB safetensors) "
        f"at {datetime.datetime.now().isoformat(timespec='seconds')}, total {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
