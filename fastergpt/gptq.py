"""GPTQ: 4-bit weights chosen with second-order information from calibration text.

The algorithm (Frantar et al., "GPTQ", 2022) on one linear layer W [N out, K in] with
the Hessian of its layer-wise squared error, H = 2/n * sum_x x x^T over the n input rows
the calibration text gives it (:func:`gptq_quantize`, NumPy, float64):

1. dead inputs (H[i, i] == 0) get H[i, i] = 1 and W[:, i] = 0;
2. act_order: the columns are visited by descending H[i, i] (groups follow that
   order, as AutoGPTQ does without static groups: g_idx[k] = position of k // G);
3. damping: damp * mean(diag(H)) is added to the diagonal;
4. U = the upper Cholesky factor of H^-1;
5. columns in blocks of block_size: each column is rounded to the grid of its group
   (the group's scale and zero point come from fastergpt.int4.find_params on the
   group's current, error-updated weights when the group starts, by default with its
   clipping search, as the GPTQ authors' quantizer offers), its error divided
   by U[i, i] is spread over the block's later columns through row i of U, and after
   the block the block's errors update all later columns at once (the lazy batch).

The dequantized weights it returns (QuantizedMatrix.dequantize()) are exactly the
values the error feedback used.

The model pipeline (:func:`quantize_model`) runs a HuggingFace checkpoint in
transformers (float32, CPU) layer by layer as AutoGPTQ does: the inputs of decoder
layer 0 are caught, then for each layer the inputs of its linear modules (nn.Linear,
transformers' Conv1D) accumulate their Hessians over all calibration windows, each
module is quantized (GPTQ or round-to-nearest) and its dequantized weights written back,
and the layer is run again to give the next layer its (quantized-model) inputs.
Embeddings and the LM head stay float, unless `lm_head` asks for the head too: it is
quantized last, GPTQ on its inputs from the quantized layers (the whole model run up to
it). The result is written in the GPTQ checkpoint layout (fastergpt.gptq_format).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from fastergpt.int4 import (BITS, CLIP_SEARCH, DEFAULT_GROUP_SIZE, find_params, quantize_rtn,
                            quantize_values)
from fastergpt.int4 import QuantizedMatrix

METHODS = ("gptq", "rtn")  # the keys of fastergpt.int4.CLIP_SEARCH
DEFAULT_NSAMPLES = 128
DEFAULT_SEQLEN = 512
DEFAULT_DAMP = 0.01
DEFAULT_BLOCK_SIZE = 128
BATCH_TOKENS = 4096  # calibration tokens per forward pass
ROOT = Path(__file__).resolve().parents[1]
CORPUS_BUILDER = ROOT / "tools" / "build_corpus.py"
# Where the decoder layers of each family's CausalLM live (others: found by shape).
LAYER_PATHS = ("transformer.h", "model.layers", "model.decoder.layers", "gpt_neox.layers",
               "transformer.layers", "model.transformer.h")


# ---- arguments ---------------------------------------------------------------------

def check_group_size(group_size, name: str = "group_size") -> int:
    """-1 (one group per row) or a power of two >= 8; a ValueError names `name`."""
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {group_size!r}")
    g = int(group_size)
    if g != -1 and (g < 8 or g & (g - 1)):
        raise ValueError(f"{name} {g} is not supported (a power of two >= 8, or -1 for one "
                         "group per row)")
    return g


def check_damp(damp, name: str = "damp") -> float:
    d = float(damp)
    if not 0.0 < d < 1.0:
        raise ValueError(f"{name} must be in (0, 1) (a fraction of the mean Hessian diagonal), "
                         f"got {damp!r}")
    return d


def _check_positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


# ---- the algorithm -----------------------------------------------------------------

def _upper_cholesky_of_inverse(H: np.ndarray, damp: float) -> np.ndarray:
    """U upper triangular with U^T U = (H + damp * mean(diag H) I)^-1 (H is modified)."""
    H[np.diag_indices_from(H)] += damp * float(np.mean(np.diag(H)))
    try:
        np.linalg.cholesky(H)  # positive definite, or LinAlgError
        Hinv = np.linalg.inv(H)
        Hinv = (Hinv + Hinv.T) / 2
        return np.ascontiguousarray(np.linalg.cholesky(Hinv).T)
    except np.linalg.LinAlgError:
        raise ValueError(f"the Hessian is not positive definite with damp={damp:g}; raise "
                         "damp (or give more calibration text)") from None


def gptq_quantize(W, H, group_size: int = DEFAULT_GROUP_SIZE, sym: bool = False,
                  act_order: bool = False, damp: float = DEFAULT_DAMP,
                  block_size: int = DEFAULT_BLOCK_SIZE,
                  clip_search: bool = CLIP_SEARCH["gptq"], return_dequantized: bool = False):
    """GPTQ of W [N, K] (float, engine orientation) under the Hessian H [K, K] of its
    inputs; see the module docstring (clip_search: as in fastergpt.int4.find_params).
    Returns a QuantizedMatrix (g_idx set when act_order), or (it, float32 [N, K] the values
    the error feedback used) with return_dequantized."""
    W = np.asarray(W, dtype=np.float32)
    if W.ndim != 2 or W.size == 0:
        raise ValueError(f"W must be a non-empty [N, K] matrix, got shape {W.shape}")
    if not np.isfinite(W).all():
        raise ValueError("W holds NaN or Inf values")
    N, K = W.shape
    H = np.array(H, dtype=np.float64)  # a copy: modified below
    if H.shape != (K, K):
        raise ValueError(f"H must be [{K}, {K}] for W of shape {W.shape}, got {H.shape}")
    if not np.isfinite(H).all():
        raise ValueError("H holds NaN or Inf values")
    G = check_group_size(group_size)
    G = K if G == -1 else G
    damp = check_damp(damp)
    B = _check_positive(block_size, "block_size")

    Wt = W.T.astype(np.float64)  # [K, N]: row k is column k of W (contiguous)
    dead = np.diag(H) == 0
    H[dead, dead] = 1.0
    Wt[dead] = 0.0
    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(K)
    if act_order:
        Wt, H = Wt[perm], H[np.ix_(perm, perm)]
    U = _upper_cholesky_of_inverse(H, damp)

    groups = -(-K // G)
    scales = np.empty((groups, N), dtype=np.float32)
    zeros = np.empty((groups, N), dtype=np.int32)
    Qt = np.empty((K, N), dtype=np.uint8)
    Dt = np.empty((K, N), dtype=np.float32)  # the dequantized values the feedback used
    for i1 in range(0, K, B):
        i2 = min(i1 + B, K)
        W1 = Wt[i1:i2].copy()
        E1 = np.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            j = i1 + i
            if j % G == 0:  # a group starts: its parameters from its current weights
                end = min(j + G, K)
                cur = W1[i:min(end, i2) - i1]
                if end > i2:  # the rest of the group, with this block's feedback so far
                    rest = Wt[i2:end] - U[i1:j, i2:end].T @ E1[:i]
                    cur = np.concatenate([cur, rest])
                scale, zero = find_params(cur.T, sym=sym, clip_search=clip_search)
                scales[j // G], zeros[j // G] = scale, zero
            w = W1[i]
            q = quantize_values(w[:, None], scale, zero)[:, 0]
            dq = scale * (q.astype(np.float32) - zero.astype(np.float32))
            Qt[j], Dt[j] = q, dq
            err = (w - dq) / U1[i, i]
            W1[i + 1:] -= np.outer(U1[i, i + 1:], err)
            E1[i] = err
        if i2 < K:
            Wt[i2:] -= U[i1:i2, i2:].T @ E1
    inv = np.argsort(perm)
    m = QuantizedMatrix(np.ascontiguousarray(Qt[inv].T), np.ascontiguousarray(scales.T),
                        np.ascontiguousarray(zeros.T), G,
                        (inv // G).astype(np.int32) if act_order else None).check("gptq")
    return (m, np.ascontiguousarray(Dt[inv].T)) if return_dequantized else m


# ---- calibration text ----------------------------------------------------------------

def default_calibration_documents() -> list:
    """The training split of the default model's corpus; the held-out split that
    perplexity is measured on is never among them."""
    return default_corpus_documents("train")


def default_corpus_documents(split: str) -> list:
    """The documents of one split ("train" or "heldout") of the default model's corpus
    (tools/build_corpus.py, run in a subprocess: it imports the standard library)."""
    if not CORPUS_BUILDER.is_file():
        raise ValueError(f"calibration: no text given, and the default corpus builder "
                         f"{CORPUS_BUILDER} (part of fastergpt's source tree) is not here; give "
                         "a calibration text file")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "corpus.json"
        proc = subprocess.run([sys.executable, str(CORPUS_BUILDER), "--quiet", "--out", str(out)],
                              capture_output=True, text=True, cwd=str(ROOT), timeout=600)
        if proc.returncode != 0 or not out.is_file():
            raise ValueError(f"calibration: building the default corpus failed: "
                             f"{proc.stderr.strip()[-500:]}")
        return json.loads(out.read_text(encoding="utf-8"))[split]


def calibration_ids(tokenizer, calibration=None) -> np.ndarray:
    """The token stream to calibrate on: a text file (after an end-of-text token, as
    perplexity reads one), or by default the default model's training documents, each
    after an end-of-text token (the stream the model was trained on)."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if calibration is None:
        ids = []
        for doc in default_calibration_documents():
            ids += eos + tokenizer.encode(doc)
        return np.asarray(ids, dtype=np.int64)
    try:
        text = Path(os.fspath(calibration)).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"calibration {str(calibration)!r} is not UTF-8 text (byte {e.start}: "
                         f"{e.reason})") from None
    except OSError as e:
        raise ValueError(f"calibration {str(calibration)!r}: {e.strerror or e}") from None
    return np.asarray(eos + tokenizer.encode(text), dtype=np.int64)


def calibration_windows(ids: np.ndarray, nsamples: int, seqlen: int, log=None) -> np.ndarray:
    """int64 [n, L]: nsamples windows of seqlen tokens, evenly spaced over the stream and
    never overlapping; fewer (or one shorter window) when the text is short, said in `log`."""
    T = int(ids.size)
    if T < 2:
        raise ValueError(f"calibration: the text gives {T} token(s); at least 2 are needed")
    if T < seqlen:
        if log:
            log(f"calibration: the text has only {T} tokens, fewer than seqlen={seqlen}: "
                f"using one window of {T}")
        return ids[None, :].copy()
    n = min(nsamples, T // seqlen)
    if n < nsamples and log:
        log(f"calibration: the text has {T} tokens, enough for {n} windows of {seqlen}, not "
            f"nsamples={nsamples}: using {n}")
    starts = np.rint(np.linspace(0, T - seqlen, n)).astype(np.int64) if n > 1 else np.zeros(1, np.int64)
    return np.stack([ids[s:s + seqlen] for s in starts])


# ---- the model pipeline --------------------------------------------------------------

def decoder_layers(model, n_layer: int):
    """The ModuleList of a CausalLM's decoder layers (transformer.h, model.layers,
    model.decoder.layers, gpt_neox.layers, ..., or the one list of n_layer modules)."""
    import torch

    for path in LAYER_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, torch.nn.ModuleList) and len(obj) == n_layer:
            return path, obj
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, torch.nn.ModuleList) and len(m) == n_layer]
    if len(found) != 1:
        raise ValueError(f"cannot find the {n_layer} decoder layers of {type(model).__name__}")
    return found[0]


def linear_modules(layer) -> list:
    """[(name within the layer, module)] of its nn.Linear and transformers Conv1D modules."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return [(name, m) for name, m in layer.named_modules()
            if isinstance(m, (torch.nn.Linear, Conv1D))]


def _is_conv1d(module) -> bool:
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


def linear_weight(module) -> np.ndarray:
    """float32 [out, in] (Conv1D stores [in, out])."""
    w = module.weight.detach().float().numpy()
    return np.ascontiguousarray(w.T if _is_conv1d(module) else w)


def set_linear_weight(module, w: np.ndarray) -> None:
    import torch

    w = np.ascontiguousarray(w.T if _is_conv1d(module) else w, dtype=np.float32)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(w))


class _Caught(Exception):
    """Raised by the catcher once layer 0's inputs are stored."""


def _layer_inputs(model, layer0, windows: np.ndarray, batch: int) -> list:
    """[(args, kwargs)] of decoder layer 0 for each batch of windows (the model stops there)."""
    caught = []

    def catcher(module, args, kwargs):
        caught.append((list(args), dict(kwargs)))
        raise _Caught

    handle = layer0.register_forward_pre_hook(catcher, with_kwargs=True)
    try:
        _run_to_catcher(model, windows, batch, "its first decoder layer")
    finally:
        handle.remove()
    return caught


def _run_to_catcher(model, windows: np.ndarray, batch: int, where: str) -> None:
    """Runs the model on each batch of windows up to the hook at `where`, which raises
    _Caught once it has what it needs."""
    import torch

    for b in range(0, len(windows), batch):
        try:
            ids = torch.from_numpy(windows[b:b + batch])
            model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)
        except _Caught:
            pass
        else:
            raise RuntimeError(f"the model ran past {where}; cannot catch its inputs")


def _hidden(args, kwargs):
    return args[0] if args else kwargs["hidden_states"]


def _with_hidden(args, kwargs, hidden):
    if args:
        return [hidden] + list(args[1:]), kwargs
    return args, dict(kwargs, hidden_states=hidden)


def _run_layer(layer, inputs: list) -> list:
    """The layer's output hidden states for each caught (args, kwargs)."""
    outs = []
    for args, kwargs in inputs:
        out = layer(*args, **kwargs)
        outs.append(out[0] if isinstance(out, (tuple, list)) else out)
    return outs


def _head_hessian(model, head, windows: np.ndarray, batch: int) -> np.ndarray:
    """2/n sum x x^T of the LM head's input rows over the calibration windows, the model
    (its layers already quantized) run up to the head, which is never multiplied."""
    import torch

    total, rows = None, 0

    def catcher(module, args):
        nonlocal total, rows
        x = args[0].detach().reshape(-1, args[0].shape[-1]).to(torch.float32)
        product = (x.T @ x).to(torch.float64)  # float32 per batch, as _Hessians sums them
        total = product if total is None else total + product
        rows += x.shape[0]
        raise _Caught

    handle = head.register_forward_pre_hook(catcher)
    try:
        _run_to_catcher(model, windows, batch, "its LM head")
    finally:
        handle.remove()
    return total.numpy() * (2.0 / max(rows, 1))


class _Hessians:
    """Forward hooks that accumulate sum x x^T of each module's input rows (float64 over
    the batches); modules fed the very same tensor (q/k/v, gate/up) share one accumulator."""

    def __init__(self, modules: list):
        self.sums, self.rows, self.alias = {}, {}, {}
        self._seen = {}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in modules]

    def _hook(self, name):
        import torch

        def hook(module, inputs, output):
            x = inputs[0]
            if name in self.alias:
                return
            for other, seen in self._seen.items():
                if seen is x:
                    self.alias[name] = other
                    return
            self._seen[name] = x
            # One batch's x^T x in float32 (at most BATCH_TOKENS rows: a relative error
            # near 1e-6, far under GPTQ's damping), summed over the batches in float64.
            # float32 runs the largest product, over the MLP's 4 * hidden inputs, 1.7x
            # faster than float64 on 2 cores.
            x = x.detach().reshape(-1, x.shape[-1]).to(torch.float32)
            if name not in self.sums:
                self.sums[name] = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
                self.rows[name] = 0
            self.sums[name] += (x.T @ x).to(torch.float64)
            self.rows[name] += x.shape[0]
        return hook

    def batch_done(self):
        self._seen = {}

    def hessian(self, name) -> np.ndarray:
        name = self.alias.get(name, name)
        return self.sums[name].numpy() * (2.0 / max(self.rows[name], 1))

    def remove(self):
        for h in self.handles:
            h.remove()


def _gptq_with_retries(W, H, log, name, **kw):
    damp = kw.pop("damp")
    while True:
        try:
            return gptq_quantize(W, H, damp=damp, **kw)
        except ValueError as e:
            if "positive definite" not in str(e) or damp * 10 >= 1:
                raise ValueError(f"{name}: {e}") from None
            damp *= 10
            log(f"{name}: the Hessian is not positive definite; retrying with damp={damp:g}")


def _load_model(auto_class, path: Path, dtype):
    """The checkpoint in transformers, in eval mode, without its loading progress bar."""
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return auto_class.from_pretrained(str(path), dtype=dtype).eval()
    finally:
        if bar:
            hf_logging.enable_progress_bar()


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def quantize_model(model_dir, output_dir, method: str = "gptq", bits: int = BITS,
                   group_size: int = DEFAULT_GROUP_SIZE, sym: bool = False,
                   act_order: bool = False, calibration=None, nsamples: int = DEFAULT_NSAMPLES,
                   seqlen: int = DEFAULT_SEQLEN, damp: float = DEFAULT_DAMP,
                   block_size: int = DEFAULT_BLOCK_SIZE, clip_search: Optional[bool] = None,
                   lm_head: bool = False, overwrite: bool = False,
                   progress: Optional[Callable[[str], None]] = None) -> Path:
    """Quantizes the linear modules of a HuggingFace checkpoint's decoder layers to 4 bits
    (GPTQ on calibration text, or round-to-nearest) and writes a GPTQ checkpoint to
    `output_dir`; see the module docstring. `model_dir` may be "default". clip_search
    (fastergpt.int4.find_params): None takes the method's default (int4.CLIP_SEARCH).
    lm_head: quantize the LM head too, last, the same way (GPTQ: on its inputs from the
    quantized layers; never act-order, as the engine takes a vocabulary matrix's columns
    in order); a head tied to the token table becomes a module of its own, the table
    staying float. `progress` receives one line per layer (default: stderr). Returns the
    output directory."""
    from fastergpt.checkpoint import _hf_config, detect_layout
    from fastergpt.gptq_format import (check_output_dir, fits_layout, gptq_config,
                                       quantization_config, write_gptq_checkpoint)
    from fastergpt.pretrained import resolve_model_path

    log = progress or _stderr
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if bits != BITS:
        raise ValueError(f"bits {bits!r} is not supported (fastergpt quantizes to {BITS} bits)")
    group_size = check_group_size(group_size)
    damp = check_damp(damp)
    nsamples = _check_positive(nsamples, "nsamples")
    seqlen = _check_positive(seqlen, "seqlen")
    block_size = _check_positive(block_size, "block_size")
    if clip_search is not None and not isinstance(clip_search, (bool, np.bool_)):
        raise ValueError(f"clip_search must be True, False or None (the method's default), got "
                         f"{clip_search!r}")
    clip_search = CLIP_SEARCH[method] if clip_search is None else bool(clip_search)
    if act_order and method != "gptq":
        raise ValueError("act_order needs method 'gptq' (round-to-nearest has no Hessian to "
                         "order the columns by)")
    src = resolve_model_path(model_dir)
    if detect_layout(src) != "hf":
        raise ValueError(f"model {src}: quantize reads HuggingFace checkpoints (config.json + "
                         "model.safetensors or pytorch_model.bin)")
    config = _hf_config(src)
    if gptq_config(src) is not None:
        raise ValueError(f"model {src} is already quantized (its config has a quantization_config)")
    out = check_output_dir(output_dir, overwrite, src)
    if calibration is not None and not Path(os.fspath(calibration)).is_file():
        raise ValueError(f"calibration {str(calibration)!r} is not a file")

    import torch
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    with torch.no_grad():
        model = _load_model(AutoModelForCausalLM, src, torch.float32)
        prefix, layers = decoder_layers(model, config.n_layer)
        per_layer = [linear_modules(layer) for layer in layers]
        for i, modules in enumerate(per_layer):
            for name, m in modules:
                N, K = linear_weight(m).shape
                if not fits_layout(N, K):
                    raise ValueError(f"{prefix}.{i}.{name} is [{N}, {K}] (out, in); the GPTQ layout "
                                     "needs both in multiples of 8")
        head = model.get_output_embeddings() if lm_head else None
        if head is not None:
            head_name = next(n for n, m in model.named_modules() if m is head)
            N, K = head.weight.shape
            if not fits_layout(N, K):
                raise ValueError(f"lm_head: the LM head ({head_name}) is [{N}, {K}] (out, in); "
                                 "the GPTQ layout needs both in multiples of 8: leave lm_head "
                                 "out (--vocab_dtype int4 then rounds it to nearest at load)")
        quantized = {}
        meta = {"quantizer": ["fastergpt"], "method": method, "clip_search": clip_search,
                "lm_head": bool(lm_head)}
        if method == "rtn":
            for i, modules in enumerate(per_layer):
                t = time.perf_counter()
                for name, m in modules:
                    qm = quantize_rtn(linear_weight(m), group_size, sym=sym, clip_search=clip_search)
                    qm.transposed = _is_conv1d(m)
                    quantized[f"{prefix}.{i}.{name}.weight"] = qm
                log(f"layer {i + 1}/{len(layers)}: {len(modules)} modules (rtn) in "
                    f"{time.perf_counter() - t:.1f} s")
        else:
            from fastergpt.tokenizer import Tokenizer

            limit = config.n_positions
            if seqlen > limit:
                log(f"calibration: seqlen {seqlen} is more than the model's {limit} positions: "
                    f"using {limit}")
                seqlen = limit
            ids = calibration_ids(Tokenizer.from_dir(src), calibration)
            windows = calibration_windows(ids, nsamples, seqlen, log)
            if windows.max() >= config.vocab_size:
                raise ValueError(f"calibration: token id {int(windows.max())} is outside the "
                                 f"model's vocabulary of {config.vocab_size}")
            log(f"calibration: {windows.shape[0]} windows of {windows.shape[1]} tokens "
                f"({'default corpus, train split' if calibration is None else calibration})")
            meta.update(nsamples=int(windows.shape[0]), seqlen=int(windows.shape[1]))
            batch = max(1, BATCH_TOKENS // windows.shape[1])
            inputs = _layer_inputs(model, layers[0], windows, batch)
            for i, layer in enumerate(layers):
                t = time.perf_counter()
                modules = per_layer[i]
                hooks = _Hessians(modules)
                try:
                    for args, kwargs in inputs:
                        layer(*args, **kwargs)
                        hooks.batch_done()
                finally:
                    hooks.remove()
                t_hessians = time.perf_counter()
                for name, m in modules:
                    full = f"{prefix}.{i}.{name}"
                    qm = _gptq_with_retries(linear_weight(m), hooks.hessian(name), log, full,
                                            group_size=group_size, sym=sym, act_order=act_order,
                                            damp=damp, block_size=block_size,
                                            clip_search=clip_search)
                    set_linear_weight(m, qm.dequantize())
                    qm.transposed = _is_conv1d(m)
                    quantized[f"{full}.weight"] = qm
                del hooks
                t_gptq = time.perf_counter()
                if i + 1 < len(layers):
                    outs = _run_layer(layer, inputs)
                    inputs = [_with_hidden(a, k, h) for (a, k), h in zip(inputs, outs)]
                t_end = time.perf_counter()
                log(f"layer {i + 1}/{len(layers)}: {len(modules)} modules (gptq) in "
                    f"{t_end - t:.1f} s (inputs and Hessians {t_hessians - t:.1f} s, GPTQ "
                    f"{t_gptq - t_hessians:.1f} s, quantized layer {t_end - t_gptq:.1f} s)")
        if head is not None:
            t = time.perf_counter()
            W = head.weight.detach().numpy().astype(np.float32)
            if method == "rtn":
                qm = quantize_rtn(W, group_size, sym=sym, clip_search=clip_search)
            else:
                H = _head_hessian(model, head, windows, batch)
                qm = _gptq_with_retries(W, H, log, head_name, group_size=group_size, sym=sym,
                                        act_order=False, damp=damp, block_size=block_size,
                                        clip_search=clip_search)
            qm.transposed = False  # an nn.Linear: [out, in] as stored
            quantized[f"{head_name}.weight"] = qm
            log(f"LM head ({head_name}, {W.shape[0]} x {W.shape[1]}, {method}) in "
                f"{time.perf_counter() - t:.1f} s")
    qconfig = quantization_config(group_size, desc_act=act_order, sym=sym, damp_percent=damp,
                                  lm_head=lm_head, meta=meta)
    tied = f"{head_name}.weight" if head is not None and config.tie_word_embeddings else None
    out = write_gptq_checkpoint(out, src, config, quantized, qconfig, overwrite=overwrite,
                                tied_head=tied)
    log(f"wrote {out} ({method}, {len(quantized)} modules, group size {group_size}) in "
        f"{time.perf_counter() - start:.1f} s")
    return out
