"""Subprocess steps of fastergpt.export: `save` (to_static + jit.save, in a process
whose FLAGS_enable_pir_api picks the format) and `probe` (load the directory with
the Paddle Inference predictor in a fresh process and print greedy ids as JSON)."""
import json
import sys

from fastergpt.export import PROBE_SETTINGS


def main(argv):
    step = argv[0]
    if step == "save":
        src, prefix, dtype, vocab_dtype = argv[1:5]
        import paddle

        from fastergpt.faster_gpt import FasterGPT

        model = FasterGPT.from_pretrained(src, dtype=dtype, vocab_dtype=vocab_dtype or None)
        spec = FasterGPT.input_spec()
        paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), prefix)
    elif step == "probe":
        directory, prompt, max_new = argv[1], argv[2], int(argv[3])
        from fastergpt.predictor import Predictor

        out = Predictor(directory).generate([prompt], max_new_tokens=max_new, **PROBE_SETTINGS)
        print(json.dumps(out.ids.tolist()))
    else:
        raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
