"""Engines timed in turn (in one process, or a process each): this host's speed drifts
more between runs (and processes) than the differences the A/B benchmarks look for, so
each round calls every engine once, every other round in reverse order, and drift hits
them alike."""
from __future__ import annotations

import time


def turns(names, rounds: int):
    """The names in the order the A/B benchmarks run them: each once a round, every other
    round in reverse."""
    names = list(names)
    for r in range(rounds):
        yield from (names if r % 2 == 0 else names[::-1])


def alternate(engines: dict, call, rounds: int) -> dict:
    """{name: [seconds of call(engine), one per round]} for the engines {name: engine}."""
    times = {name: [] for name in engines}
    for name in turns(engines, rounds):
        t0 = time.perf_counter()
        call(engines[name])
        times[name].append(time.perf_counter() - t0)
    return times


def report(times: dict, tokens: int, test: str, base: str) -> list:
    """Prints each engine's tokens/s (median and best round) and the time ratio of `test`
    to `base` round by round; returns those ratios."""
    import statistics

    width = max(len(name) for name in times)
    for name, t in times.items():
        print(f"  {name:{width}s}: {tokens / statistics.median(t):7.1f} tokens/s median, "
              f"{tokens / min(t):7.1f} best")
    ratios = [x / y for x, y in zip(times[test], times[base])]
    print(f"  {test} / {base} time per call: median {statistics.median(ratios):.3f}x, "
          f"rounds {min(ratios):.3f}-{max(ratios):.3f}x")
    return ratios
