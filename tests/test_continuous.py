"""Continuous batching (fastergpt.continuous): 32 requests of different prompt lengths
and settings join a batch of 8 rows at different steps and leave it as they finish;
each gets exactly what generate() gives its prompt alone, nothing lost or duplicated."""
import numpy as np
import pytest

from fastergpt import Engine
from batches import run_batch
from helpers import tiny_model


@pytest.fixture(scope="module")
def engine():
    return Engine.from_model(tiny_model(seed=6, vocab_size=61, n_positions=64, std=0.3))


def alone(engine, prompt, rng_row, settings):
    out = engine.generate(np.array([prompt]), num_return_sequences=rng_row + 1, **settings)
    return list(map(int, out["ids"][rng_row][:out["lengths"][rng_row]]))


def test_requests_joining_and_leaving_get_what_each_gets_alone(engine):
    rng = np.random.RandomState(0)
    requests = []
    for q in range(32):
        prompt = list(map(int, rng.randint(3, 61, size=rng.randint(1, 12))))
        settings = dict(max_new_tokens=int(rng.randint(1, 20)), eos_token_id=2, pad_token_id=0)
        if q % 3 == 1:
            settings.update(decode_strategy="sampling", top_k=10, seed=q, temperature=0.8)
        if q % 4 == 2:
            settings.update(repetition_penalty=1.3, no_repeat_ngram_size=2)
        requests.append((prompt, int(q % 2), settings))
    batch = engine.batch(capacity=8)
    queue, got, row_of, step = list(range(32)), {}, {}, 0
    while queue or batch.running:
        # A few join every step while rows are free (the rest wait, as a server's queue).
        for _ in range(rng.randint(0, 3)):
            if queue and batch.free_rows:
                q = queue.pop(0)
                prompt, rng_row, settings = requests[q]
                row_of[batch.join(prompt, rng_row=rng_row, **settings)] = q
                got[q] = []
        out = batch.step()
        step += 1
        assert step < 2000
        if out is None:
            continue
        tokens, _ = out
        for row, q in list(row_of.items()):
            if tokens[row] < 0:
                continue
            got[q].append(int(tokens[row]))
            settings = requests[q][2]
            if tokens[row] == settings["eos_token_id"] or len(got[q]) == settings["max_new_tokens"]:
                batch.release(row)
                del row_of[row]
    assert sorted(got) == list(range(32))
    for q, (prompt, rng_row, settings) in enumerate(requests):
        assert got[q] == alone(engine, prompt, rng_row, settings), q


def test_bad_requests_are_refused_and_the_batch_goes_on(engine):
    batch = engine.batch(capacity=2, max_positions=16)
    row = batch.join([5, 6, 7], max_new_tokens=4)
    with pytest.raises(ValueError, match=r"top_p must be in \(0, 1\]"):
        batch.join([1, 2], top_p=1.5)
    with pytest.raises(ValueError, match=r"id 99 at \[0, 1\] is outside the vocabulary"):
        batch.join([1, 99])
    with pytest.raises(ValueError, match=r"does not fit the batch's 16 positions"):
        batch.join([1, 2, 3], max_new_tokens=20)
    with pytest.raises(ValueError, match="streaming does not support beam search"):
        batch.join([1, 2], num_beams=2)
    with pytest.raises(ValueError, match="1-D integer token ids"):
        batch.join([[1, 2]])
    batch.join([8], max_new_tokens=2)
    with pytest.raises(ValueError, match="all 2 rows are running"):
        batch.join([9])
    assert run_batch(batch, [row])[row] == alone(engine, [5, 6, 7], 0, dict(max_new_tokens=4))
    with pytest.raises(ValueError, match=r"needs about \d+ MB .* but max_memory_mb allows 1 MB"):
        engine.batch(capacity=4096, max_memory_mb=1)


def test_joins_from_other_threads_while_the_loop_steps(engine):
    """A server's shape: request threads join (and release) while one loop thread steps."""
    import threading

    batch = engine.batch(capacity=4)
    prompts = [[5 + q, 6, 7 + q % 5] for q in range(12)]
    results, rows, lock = {}, {}, threading.Lock()
    done = threading.Event()

    def loop():
        while not done.is_set() or batch.running:
            out = batch.step()
            if out is None:
                continue
            with lock:
                for row, q in list(rows.items()):
                    if out[0][row] >= 0:
                        results[q].append(int(out[0][row]))
                        if len(results[q]) == 6:
                            del rows[row]
                            batch.release(row)

    def client(q):
        while True:
            with lock:
                if batch.free_rows:
                    results[q] = []
                    rows[batch.join(prompts[q], max_new_tokens=6, eos_token_id=-1)] = q
                    return

    t = threading.Thread(target=loop)
    t.start()
    clients = [threading.Thread(target=client, args=(q,)) for q in range(12)]
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    done.set()
    t.join(timeout=60)
    assert not t.is_alive()
    for q in range(12):
        assert results[q] == alone(engine, prompts[q], 0, dict(max_new_tokens=6, eos_token_id=-1))


def test_several_join_in_one_prompt_pass(engine):
    """join_many: one prompt pass for several sequences; each still gets what it gets alone,
    and a bad one among them leaves the batch unchanged."""
    batch = engine.batch(capacity=6)
    first = batch.join([5, 6], max_new_tokens=10, eos_token_id=-1)
    first_token = int(batch.step()[0][first])
    joins = [([7, 8, 9, 10], 0, dict(max_new_tokens=6, eos_token_id=-1)),
             ([11], 1, dict(max_new_tokens=5, eos_token_id=-1, decode_strategy="sampling", seed=4)),
             ([12, 13, 14], 0, dict(max_new_tokens=7, eos_token_id=-1, repetition_penalty=1.4))]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        batch.join_many(joins + [([999], 0, {})])
    assert batch.free_rows == 5 and batch.running == 1
    rows = batch.join_many(joins)
    got = run_batch(batch, rows + [first])
    got[first].insert(0, first_token)
    for r, (prompt, rng_row, settings) in zip(rows, joins):
        assert got[r] == alone(engine, prompt, rng_row, settings)
    assert got[first] == alone(engine, [5, 6], 0, dict(max_new_tokens=10, eos_token_id=-1))


def test_rows_finished_between_steps_leave_and_their_slots_serve_again(engine):
    """A caller ends rows between steps (a stop string, a client gone), at every moment a
    step can leave: the others still get what they get alone, and a new sequence in a
    freed slot does too; a joined sequence's first token comes in the very next step
    (the one that runs its prompt)."""
    settings = dict(max_new_tokens=12, eos_token_id=-1)
    prompts = [[5, 6, 7], [9, 10], [11, 12, 13, 14], [20], [30, 31]]
    want = [alone(engine, p, 0, settings) for p in prompts]
    for cut in range(1, 6):  # the step after which rows 0 and 1 are ended
        batch = engine.batch(capacity=3)
        rows = {batch.join(p, **settings): q for q, p in enumerate(prompts[:3])}
        got = {q: [] for q in range(len(prompts))}
        joined_after, first_at = {}, {}
        waiting, step = [3, 4], 0
        while batch.running or waiting:
            out = batch.step()
            step += 1
            assert step < 100
            if out is not None:
                for row, q in rows.items():
                    if out[0][row] >= 0:
                        got[q].append(int(out[0][row]))
                        first_at.setdefault(q, step)
            for row, q in list(rows.items()):
                if (step == cut and q in (0, 1)) or len(got[q]) == 12:
                    batch.finish(row)
                    batch.release(row)
                    del rows[row]
                    if waiting:
                        new = waiting.pop(0)
                        joined_after[new] = step
                        rows[batch.join(prompts[new], **settings)] = new
        for q in (0, 1):
            assert got[q] == want[q][:cut], (cut, q)
        for q in (2, 3, 4):
            assert got[q] == want[q], (cut, q)
            if q in joined_after:
                assert first_at[q] == joined_after[q] + 1, (cut, q)
