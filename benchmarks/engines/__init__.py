"""Engines compared by benchmarks/bench_generate.py, each behind one small adapter:
load(model_dir, dtype, threads) then generate(ids, new_tokens, top_k) -> ids [B, T].
Every engine runs in its own process (benchmarks/engines/run_engine.py) so its
peak resident memory is its own."""
