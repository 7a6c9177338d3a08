"""The CUDA backend on a GPU (`pytest -m gpu`): every family's greedy decoding equals
the CPU engine's token for token in float32 and transformers' on torch; logits
within 1e-4; float16 within 1% of the largest logit and agreeing with float32 on at
least 95% of greedy tokens;
seeded sampling, beam search, streaming and the continuous batch equal to the
CPU's. Paddle-free (only `fastergpt.Engine`), so it runs where the GPU machine
has torch and no Paddle. Every test skips, saying why, where no GPU is visible
or the build has no CUDA backend (tests/test_devices.py checks that much here).
"""
import numpy as np
import pytest

from fastergpt.engine import Engine, cuda_available

torch = pytest.importorskip("torch")
from families import FAMILIES, P, PROMPTS, hf_alone, make_hf, padded_batch, saved_hf  # noqa: E402

pytestmark = pytest.mark.gpu
NEW = P - max(map(len, PROMPTS))  # up to the last position the test models allow


@pytest.fixture(scope="module", autouse=True)
def gpu():
    ok, why = cuda_available()
    if not ok:
        pytest.skip(f"the CUDA backend cannot run here: {why}")


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    hf, directory = saved_hf(request.param, tmp_path_factory)
    return request.param, hf, directory


def greedy(engine, **settings):
    ids, mask = padded_batch(PROMPTS)
    return engine.generate(ids, mask, max_new_tokens=NEW, eos_token_id=-1, **settings)["ids"]


def test_greedy_equals_the_cpu_engine_and_transformers_on_the_gpu(family):
    name, hf, directory = family
    got = greedy(Engine.from_pretrained(directory, device="gpu"))
    np.testing.assert_array_equal(got, greedy(Engine.from_pretrained(directory)), err_msg=name)
    hf = hf.to("cuda")
    for row, prompt in zip(got, PROMPTS):
        np.testing.assert_array_equal(row, hf_alone(hf, prompt, NEW), err_msg=name)


def test_logits_equal_the_cpu_engine(family):
    name, _, directory = family
    ids, mask = padded_batch(PROMPTS)
    want = Engine.from_pretrained(directory).logits(ids, mask)
    got = Engine.from_pretrained(directory, device="gpu").logits(ids, mask)
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), name


def test_float16_agrees_with_float32(family):
    name, _, directory = family
    ids, mask = padded_batch(PROMPTS)
    fp32 = Engine.from_pretrained(directory)
    fp16 = Engine.from_pretrained(directory, "float16", device="gpu")
    want = fp32.logits(ids, mask)
    err = np.abs(fp16.logits(ids, mask) - want)[mask.astype(bool)].max() / np.abs(want).max()
    print(f"{name} float16 on the GPU: max logit error {err:.3g} of the largest logit")
    assert err <= 1e-2, (name, err)  # weights and activations in half for the tensor cores
    agree = (greedy(fp16) == greedy(fp32)).mean()
    assert agree >= 0.95, (name, agree)


def test_seeded_sampling_equals_the_cpu_engine(family):
    name, _, directory = family
    settings = dict(decode_strategy="sampling", top_k=8, top_p=0.9, temperature=0.8, seed=11)
    want = greedy(Engine.from_pretrained(directory), **settings)
    np.testing.assert_array_equal(greedy(Engine.from_pretrained(directory, device="gpu"), **settings),
                                  want, err_msg=name)


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_beam_search_equals_the_cpu_engine(name, tmp_path):
    make_hf(name).save_pretrained(tmp_path)
    settings = dict(decode_strategy="beam_search", num_beams=3, num_return_sequences=2)
    ids, mask = padded_batch(PROMPTS)
    cpu = Engine.from_pretrained(tmp_path).generate(ids, mask, max_new_tokens=12, **settings)
    gpu = Engine.from_pretrained(tmp_path, device="gpu").generate(ids, mask, max_new_tokens=12,
                                                                  **settings)
    np.testing.assert_array_equal(gpu["ids"], cpu["ids"])
    np.testing.assert_allclose(gpu["scores"], cpu["scores"], rtol=1e-4)


def test_streaming_and_continuous_batch_on_the_gpu(tmp_path):
    make_hf("gpt2").save_pretrained(tmp_path)
    engine = Engine.from_pretrained(tmp_path, device="gpu")
    ids, mask = padded_batch(PROMPTS)
    whole = engine.generate(ids, mask, max_new_tokens=10, eos_token_id=-1)["ids"]
    steps = [step.tokens for step in engine.generate_stream(ids, mask, max_new_tokens=10,
                                                            eos_token_id=-1)]
    np.testing.assert_array_equal(np.stack(steps, axis=1), whole)
    batch = engine.batch(capacity=2)
    row = batch.join(PROMPTS[0], max_new_tokens=10, eos_token_id=-1)
    tokens = []
    while batch.running:
        step, _ = batch.step()
        if step[row] >= 0:
            tokens.append(step[row])
    np.testing.assert_array_equal(tokens, whole[0])


def test_default_model_long_greedy_equals_the_cpu():
    prompt = np.array([[464, 2068, 7586, 21831, 18045]]) % 1000
    cpu = Engine.from_pretrained(None).generate(prompt, max_new_tokens=200, eos_token_id=-1)
    gpu = Engine.from_pretrained(None, device="gpu").generate(prompt, max_new_tokens=200,
                                                             eos_token_id=-1)
    np.testing.assert_array_equal(gpu["ids"], cpu["ids"])


@pytest.mark.parametrize("dtype", ["int8", "int4", "bfloat16"])
def test_formats_without_cuda_kernels_are_named(dtype):
    with pytest.raises(ValueError, match=f"{dtype} has no CUDA kernels.*float32 or float16"):
        Engine.from_pretrained(None, dtype, device="gpu")
