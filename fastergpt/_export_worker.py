"""Subprocess steps of fastergpt.export: `save` (to_static + jit.save, in a process
whose FLAGS_enable_pir_api picks the format) and `probe` (load the directory with
the Paddle Inference predictor in a fresh process and print greedy ids as JSON)."""
import json
import sys

# Spelled out: the directory's defaults (config.json "generation", e.g. a
# repetition penalty) must not differ from what the dygraph side uses.
PROBE_SETTINGS = dict(decode_strategy="greedy_search", eos_token_id=-1, repetition_penalty=1.0,
                      min_length=0, top_k=0, top_p=1.0, temperature=1.0)


def main(argv):
    step = argv[0]
    if step == "save":
        src, prefix, dtype = argv[1:4]
        import paddle

        from fastergpt.export import input_spec
        from fastergpt.faster_gpt import FasterGPT

        model = FasterGPT.from_pretrained(src, dtype=dtype)
        paddle.jit.save(paddle.jit.to_static(model, input_spec=input_spec(), full_graph=True), prefix)
    elif step == "probe":
        directory, prompt, max_new = argv[1], argv[2], int(argv[3])
        from fastergpt.predictor import Predictor

        out = Predictor(directory).generate([prompt], max_new_tokens=max_new, **PROBE_SETTINGS)
        print(json.dumps(out.ids.tolist()))
    else:
        raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
