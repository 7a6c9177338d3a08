"""GPT-2 with an explicit KV cache as an ONNX graph, and its generation loop on
ONNX Runtime: how a user would run GPT-2 on ORT without extra packages.

Graph inputs: input_ids [B, S], position_ids [B, S], attention_mask [B, P+S]
(float 1/0), past_k / past_v [L, B, H, P, Dh]; outputs: logits of the last
position [B, V] and present_k / present_v [L, B, H, P+S, Dh].
"""
from __future__ import annotations

import numpy as np


def build_torch_module(hf_model):
    import torch

    class CachedGPT2(torch.nn.Module):
        def __init__(self, hf):
            super().__init__()
            self.t = hf.transformer
            self.n_head = hf.config.n_head

        def forward(self, input_ids, position_ids, attention_mask, past_k, past_v):
            t = self.t
            x = t.wte(input_ids) + t.wpe(position_ids)
            B, S, D = x.shape
            H = self.n_head
            Dh = D // H
            P = past_k.shape[3]
            q_pos = torch.arange(S).unsqueeze(1) + P
            k_pos = torch.arange(P + S).unsqueeze(0)
            bias = (k_pos > q_pos).float() * -1e9  # causal
            bias = bias[None, None] + (1.0 - attention_mask[:, None, None, :]) * -1e9
            pk, pv = [], []
            for i, block in enumerate(t.h):
                a = block.ln_1(x)
                qkv = torch.addmm(block.attn.c_attn.bias, a.reshape(-1, D), block.attn.c_attn.weight)
                q, k, v = qkv.reshape(B, S, 3, H, Dh).permute(2, 0, 3, 1, 4)
                k = torch.cat([past_k[i], k], dim=2)
                v = torch.cat([past_v[i], v], dim=2)
                pk.append(k)
                pv.append(v)
                w = torch.softmax(q @ k.transpose(-1, -2) / (Dh ** 0.5) + bias, dim=-1)
                o = (w @ v).permute(0, 2, 1, 3).reshape(-1, D)
                x = x + torch.addmm(block.attn.c_proj.bias, o, block.attn.c_proj.weight).reshape(B, S, D)
                m = block.ln_2(x).reshape(-1, D)
                m = torch.addmm(block.mlp.c_fc.bias, m, block.mlp.c_fc.weight)
                m = torch.nn.functional.gelu(m, approximate="tanh")
                x = x + torch.addmm(block.mlp.c_proj.bias, m, block.mlp.c_proj.weight).reshape(B, S, D)
            last = t.ln_f(x[:, -1, :])
            logits = last @ t.wte.weight.t()
            return logits, torch.stack(pk), torch.stack(pv)

    return CachedGPT2(hf_model).eval()


def export(hf_model, path: str) -> None:
    import torch

    c = hf_model.config
    L, H, Dh = c.n_layer, c.n_head, c.n_embd // c.n_head
    module = build_torch_module(hf_model)
    args = (torch.zeros(1, 3, dtype=torch.int64), torch.arange(3)[None], torch.ones(1, 3),
            torch.zeros(L, 1, H, 0, Dh), torch.zeros(L, 1, H, 0, Dh))
    torch.onnx.export(
        module, args, path, dynamo=False, opset_version=17,
        input_names=["input_ids", "position_ids", "attention_mask", "past_k", "past_v"],
        output_names=["logits", "present_k", "present_v"],
        dynamic_axes={"input_ids": {0: "B", 1: "S"}, "position_ids": {0: "B", 1: "S"},
                      "attention_mask": {0: "B", 1: "T"}, "past_k": {1: "B", 3: "P"},
                      "past_v": {1: "B", 3: "P"}, "logits": {0: "B"},
                      "present_k": {1: "B", 3: "T"}, "present_v": {1: "B", 3: "T"}})


def quantize_int8(src: str, dst: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True)


class OrtGPT2:
    def __init__(self, path: str, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        shape = self.sess.get_inputs()[3].shape  # [L, B, H, P, Dh]
        self.L, self.H, self.Dh = shape[0], shape[2], shape[4]
        self.rng = np.random.default_rng(1)

    def _choose(self, logits, top_k):
        if not top_k:
            return logits.argmax(-1)
        idx = np.argpartition(-logits, top_k, axis=-1)[:, :top_k]
        top = np.take_along_axis(logits, idx, -1)
        p = np.exp(top - top.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        pick = [self.rng.choice(top_k, p=row) for row in p]
        return idx[np.arange(len(pick)), pick]

    def generate(self, ids, new_tokens, top_k):
        B, S = ids.shape
        past = np.zeros((self.L, B, self.H, 0, self.Dh), np.float32)
        feed = {"input_ids": ids, "position_ids": np.tile(np.arange(S), (B, 1)),
                "attention_mask": np.ones((B, S), np.float32), "past_k": past, "past_v": past}
        out = []
        for step in range(new_tokens):
            logits, pk, pv = self.sess.run(None, feed)
            tok = self._choose(logits, top_k).astype(np.int64)
            out.append(tok)
            T = pk.shape[3]
            feed = {"input_ids": tok[:, None], "position_ids": np.full((B, 1), T, np.int64),
                    "attention_mask": np.ones((B, T + 1), np.float32), "past_k": pk, "past_v": pv}
        return np.stack(out, axis=1)
