"""The decoder families the tests run, as small random transformers models: the
shared table of test_families, the beam search, prompt lookup and GPU tests.
Paddle-free (the GPU machine has no Paddle): torch and transformers only.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from batches import padded_batch  # noqa: E402,F401

V, P = 131, 48  # vocabulary and positions of every test model
SPECIAL = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0)

# name -> (config class, model class, config kwargs): widths and head sizes that are not
# powers of two (12, 10, 14, 18, 20, 14), partial rotary (even rotated dims, as transformers needs).
FAMILIES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             dict(n_positions=P, n_embd=36, n_layer=2, n_head=3, activation_function="gelu_new")),
    "opt": ("OPTConfig", "OPTForCausalLM",
            dict(max_position_embeddings=P, hidden_size=40, num_hidden_layers=2,
                 num_attention_heads=4, ffn_dim=72, word_embed_proj_dim=40)),
    "opt-350m-style": ("OPTConfig", "OPTForCausalLM",
                       dict(max_position_embeddings=P, hidden_size=40, num_hidden_layers=2,
                            num_attention_heads=4, ffn_dim=72, word_embed_proj_dim=28,
                            do_layer_norm_before=False)),
    "gptj": ("GPTJConfig", "GPTJForCausalLM",
             dict(n_positions=P, n_embd=42, n_layer=2, n_head=3, rotary_dim=6)),
    "codegen": ("CodeGenConfig", "CodeGenForCausalLM",
                dict(n_positions=P, n_ctx=P, n_embd=40, n_layer=2, n_head=4, rotary_dim=4)),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                 dict(max_position_embeddings=P, hidden_size=54, num_hidden_layers=2,
                      num_attention_heads=3, intermediate_size=76, rotary_pct=0.34)),
    "gpt_neox-sequential": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                            dict(max_position_embeddings=P, hidden_size=60, num_hidden_layers=2,
                                 num_attention_heads=3, intermediate_size=76, rotary_pct=0.3,
                                 use_parallel_residual=False, hidden_act="gelu_new")),
    "llama-gqa": ("LlamaConfig", "LlamaForCausalLM",
                  dict(max_position_embeddings=P, hidden_size=60, num_hidden_layers=2,
                       num_attention_heads=6, num_key_value_heads=2, intermediate_size=84)),
    "llama3-rope-mqa": ("LlamaConfig", "LlamaForCausalLM",
                        dict(max_position_embeddings=P, hidden_size=56, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=1, intermediate_size=80,
                             tie_word_embeddings=True,
                             rope_parameters=dict(rope_type="llama3", rope_theta=500000.0,
                                                  factor=8.0, low_freq_factor=1.0,
                                                  high_freq_factor=4.0,
                                                  original_max_position_embeddings=16))),
    "mistral": ("MistralConfig", "MistralForCausalLM",
                dict(max_position_embeddings=P, hidden_size=48, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, intermediate_size=72,
                     sliding_window=None)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM",
              dict(max_position_embeddings=P, hidden_size=40, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, intermediate_size=68)),
}
PROMPTS = [[5, 9, 14, 3, 77, 21, 8], [40, 41], [7, 100, 12, 99]]
LOGIT_TOLERANCE = {"float16": 5e-3, "int8": 0.1, "int4": 0.5,  # int4 measured at most 0.33
                   "bfloat16": 1e-2}  # measured at most 3.5e-3


def make_hf(name: str, families: dict = FAMILIES):
    """A random transformers model of `families[name]` (the table of this file, or
    another of the same form: (config class, model class, config kwargs))."""
    config_cls, model_cls, kwargs = families[name]
    config = getattr(transformers, config_cls)(vocab_size=V, **SPECIAL, **kwargs)
    torch.manual_seed(sum(map(ord, name)))
    model = getattr(transformers, model_cls)(config).eval()
    with torch.no_grad():  # peaked logits, so argmax is not decided by rounding
        for p in model.parameters():
            p.normal_(0.0, 0.3 if p.ndim > 1 else 0.1)
    return model


def saved_hf(name: str, tmp_path_factory, families: dict = FAMILIES):
    """(model, directory): make_hf(name, families) saved with save_pretrained into a
    fresh temporary directory named after it (for a module-scoped fixture)."""
    hf = make_hf(name, families)
    directory = tmp_path_factory.mktemp(name)
    hf.save_pretrained(directory)
    return hf, directory


def hf_logprobs(hf, prompt, tokens):
    """transformers' log-probabilities (float64) of `tokens` after `prompt`, teacher-forced."""
    full = torch.tensor([list(prompt) + list(tokens)])
    with torch.no_grad():
        logp = torch.log_softmax(hf(full).logits.double(), -1)[0]
    return np.array([logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(tokens)])


def hf_alone(hf, prompt, new_tokens):
    """transformers' greedy continuation of one prompt (on the model's device)."""
    device = next(hf.parameters()).device
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt], device=device),
                          attention_mask=torch.ones(1, len(prompt), dtype=torch.long, device=device),
                          do_sample=False, max_new_tokens=new_tokens, pad_token_id=0,
                          eos_token_id=None)
    return out[0, len(prompt):].cpu().numpy()
