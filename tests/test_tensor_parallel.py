"""Tensor-parallel decoding (fastergpt.tensor_parallel, docs/tensor-parallel.md): one model
split by heads and MLP columns over 2 processes joined by torch.distributed's gloo
backend on 127.0.0.1 gives what 1 process gives, token for token (greedy and seeded
sampling), for every residual layout and for grouped-query attention; and the shard
arithmetic and its refusals, in this process."""
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("torch.distributed")

from fastergpt import Engine  # noqa: E402
from fastergpt.config import GPTConfig  # noqa: E402
from fastergpt.pretrained import load_state_dict  # noqa: E402
from fastergpt.tensor_parallel import run_sharded, shard_config, shard_engine, shard_tensors  # noqa: E402
from fastergpt.tokenizer import left_pad  # noqa: E402
from families import V, saved_hf  # noqa: E402

P = 64
# Every residual layout (sequential, parallel, parallel with two norms, post-norm), gated
# and plain MLPs, learned and rotary positions, grouped-query attention; heads, KV heads
# and MLP widths even, so that 2 shards divide them.
FAMILIES = {
    "gpt2": ("GPT2Config", "GPT2LMHeadModel",
             dict(n_positions=P, n_embd=48, n_layer=2, n_head=4, activation_function="gelu_new")),
    "llama-gqa": ("LlamaConfig", "LlamaForCausalLM",
                  dict(max_position_embeddings=P, hidden_size=64, num_hidden_layers=2,
                       num_attention_heads=8, num_key_value_heads=2, intermediate_size=96)),
    "gptj": ("GPTJConfig", "GPTJForCausalLM",
             dict(n_positions=P, n_embd=48, n_layer=2, n_head=4, rotary_dim=6)),
    "gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                 dict(max_position_embeddings=P, hidden_size=48, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=80, rotary_pct=0.5)),
    "opt-post-norm": ("OPTConfig", "OPTForCausalLM",
                      dict(max_position_embeddings=P, hidden_size=40, num_hidden_layers=2,
                           num_attention_heads=4, ffn_dim=72, word_embed_proj_dim=40,
                           do_layer_norm_before=False)),
}
PROMPTS = [[5, 17, 33, 8, 99], [3, 44], [120, 7, 7, 61, 2, 90, 15]]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def model_dir(request, tmp_path_factory):
    return saved_hf(request.param, tmp_path_factory, FAMILIES)[1]


def one_process(model_dir, **settings):
    ids, mask = left_pad(PROMPTS)
    return Engine.from_pretrained(model_dir).generate(ids, mask, return_logprobs=True, num_threads=1,
                                                      **settings)


@pytest.mark.parametrize("settings", [
    dict(max_new_tokens=24, eos_token_id=-1),
    dict(max_new_tokens=24, eos_token_id=-1, decode_strategy="sampling", seed=7, top_k=20),
], ids=["greedy", "sampling"])
def test_two_processes_equal_one_token_for_token(model_dir, settings):
    single = one_process(model_dir, **settings)
    ranks = run_sharded(model_dir, PROMPTS, 2, **settings)
    for r in ranks:  # every shard chose the same tokens: no token needs sending
        assert r["ids"] == single["ids"].tolist()
        assert r["lengths"] == single["lengths"].tolist()
        np.testing.assert_allclose(r["logprobs"], single["logprobs"], atol=2e-4)


def test_int8_shards_run_and_agree_with_one_int8_process(tmp_path):
    """int8 scales cover a shard's share of a row, so its numbers differ slightly from one
    process's (a shard quantizes its own activations): most tokens agree."""
    from layouts import tokenizer_model, write_hf_numpy

    d = write_hf_numpy(tmp_path, tokenizer_model(seed=4, n_embd=64, n_head=4, n_layer=2))
    ids, mask = left_pad(PROMPTS)
    single = Engine.from_pretrained(d, dtype="int8").generate(ids, mask, max_new_tokens=16, eos_token_id=-1)
    ranks = run_sharded(d, PROMPTS, 2, "int8", max_new_tokens=16, eos_token_id=-1)
    assert ranks[0]["ids"] == ranks[1]["ids"]
    agree = np.mean(np.array(ranks[0]["ids"]) == single["ids"])
    assert agree >= 0.8, agree


def test_a_shard_holds_its_heads_and_mlp_columns():
    config = GPTConfig(vocab_size=V, n_positions=P, n_embd=64, n_layer=1, n_head=8, n_kv_head=2,
                       model_type="llama", gated_mlp=True, n_inner=96, norm="rms_norm",
                       positions="rotary", qkv_bias=False, out_bias=False, mlp_bias=False)
    Dh = 8
    rng = np.random.default_rng(0)
    tensors = {"layers.0.qkv.weight": rng.standard_normal(((8 + 4) * Dh, 64)).astype(np.float32),
               "layers.0.attn_out.weight": rng.standard_normal((64, 8 * Dh)).astype(np.float32),
               "layers.0.fc.weight": rng.standard_normal((2 * 96, 64)).astype(np.float32),
               "layers.0.proj.weight": rng.standard_normal((64, 96)).astype(np.float32),
               "final_ln.gamma": np.ones(64, np.float32)}
    part, shard = shard_tensors(config, tensors, 1, 2)
    assert (part.n_head, part.n_kv_head, part.head_dim, part.n_inner) == (4, 1, 8, 48)
    qkv = tensors["layers.0.qkv.weight"]
    q, k, v = qkv[:64], qkv[64:80], qkv[80:]
    np.testing.assert_array_equal(shard["layers.0.qkv.weight"],
                                  np.concatenate([q[32:], k[8:], v[8:]]))  # heads 4-7, KV head 1
    np.testing.assert_array_equal(shard["layers.0.attn_out.weight"], tensors["layers.0.attn_out.weight"][:, 32:])
    fc = tensors["layers.0.fc.weight"]
    np.testing.assert_array_equal(shard["layers.0.fc.weight"], np.concatenate([fc[48:96], fc[144:]]))
    np.testing.assert_array_equal(shard["layers.0.proj.weight"], tensors["layers.0.proj.weight"][:, 48:])
    np.testing.assert_array_equal(shard["final_ln.gamma"], tensors["final_ln.gamma"])
    # The shards' partial products sum to the whole model's.
    x = rng.standard_normal(8 * Dh).astype(np.float32)  # the attention output, 8 heads
    parts = [shard_tensors(config, tensors, r, 2)[1]["layers.0.attn_out.weight"] @ x[r * 32:(r + 1) * 32]
             for r in range(2)]
    np.testing.assert_allclose(sum(parts), tensors["layers.0.attn_out.weight"] @ x, rtol=1e-5, atol=1e-4)


def test_one_shard_with_its_own_sum_equals_the_engine(tmp_path):
    """Size 1 runs the shard path (partial output, all-reduce, add) in this process."""
    from layouts import tokenizer_model, write_hf_numpy

    d = write_hf_numpy(tmp_path, tokenizer_model(seed=5))
    config, state = load_state_dict(d)
    calls = []
    engine = shard_engine(config, state, 0, 1, lambda a: calls.append(a.shape))
    ids, mask = left_pad(PROMPTS)
    got = engine.generate(ids, mask, max_new_tokens=12, eos_token_id=-1)
    want = Engine.from_pretrained(d).generate(ids, mask, max_new_tokens=12, eos_token_id=-1)
    np.testing.assert_array_equal(got["ids"], want["ids"])
    assert len(calls) == 2 * config.n_layer * 12  # 2 sums per block, prompt pass + 11 steps
    assert calls[-1] == (len(PROMPTS) * config.n_embd,)  # a step: one token per row


def test_refusals_name_the_problem(tmp_path):
    from layouts import tokenizer_model, write_hf_numpy

    d = write_hf_numpy(tmp_path, tokenizer_model(seed=6, n_head=2))
    config, state = load_state_dict(d)
    with pytest.raises(ValueError, match="size 3 must divide the model's attention heads"):
        shard_config(config, 3)
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\)"):
        shard_engine(config, state, 2, 2, lambda a: None)
    ids, mask = left_pad(PROMPTS)
    engine = shard_engine(config, state, 0, 1, lambda a: None)
    with pytest.raises(ValueError, match="max_time: a tensor-parallel shard"):
        engine.generate(ids, mask, max_new_tokens=4, max_time=1.0)

    def broken(a):
        raise ConnectionError("peer went away")

    with pytest.raises(RuntimeError, match="all_reduce failed: ConnectionError: peer went away"):
        shard_engine(config, state, 0, 1, broken).generate(ids, mask, max_new_tokens=4)


def test_the_demonstration_command(tmp_path):
    """python -m fastergpt.tensor_parallel: the default model over 2 processes."""
    from layouts import run_python

    r = run_python(["-m", "fastergpt.tensor_parallel", "--size", "2", "--max_new_tokens", "12"])
    assert r.returncode == 0, r.stderr
    assert "equal to 1 process token for token: True" in r.stdout
