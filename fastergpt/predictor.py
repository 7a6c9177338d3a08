"""`Predictor`: generation from an exported inference directory through `paddle.inference`.

Registers the directory's operator library itself, feeds the prompts (tokenized
with the directory's tokenizer) and every generation setting as graph inputs:
changing top_k, top_p, temperature, seed or max_new_tokens needs no re-export.
A Predictor may be shared by threads: calls take turns on its one predictor.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fastergpt.ops import op_error_to_value_error
from fastergpt.pretrained import read_export_config
from fastergpt.settings import (check_int_array, over_defaults, resolve_settings, settings_numbers,
                                settings_vector)


class PredictorError(RuntimeError):
    """The inference directory cannot be used; the message names the file."""


@dataclass
class PredictorOutput:
    texts: list      # decoded continuations (special tokens skipped), one per row
    ids: np.ndarray  # int64 [B*R, T]
    lengths: np.ndarray  # int64 [B*R]
    scores: Optional[np.ndarray] = None  # float32 [B*R], as GenerationOutput.scores
    # Prompt lookup's drafted and accepted tokens over the batch, as GenerationOutput's;
    # None from a directory exported before the graph had them as an output.
    drafted_tokens: Optional[int] = None
    accepted_tokens: Optional[int] = None


class Predictor:
    """trust_library: register the directory's own operator library even when it is
    not the installed fastergpt's build (a library is code: only for directories
    from a trusted source). By default the installed build runs the export, and a
    directory whose library differs, or was swapped after export, is refused."""

    def __init__(self, inference_dir, threads: int = 0, trust_library: bool = False):
        import paddle

        from fastergpt.ops import library_sha256, load_ops, op_library_path, register_library
        from fastergpt.tokenizer import Tokenizer

        self.dir = Path(os.fspath(inference_dir)).expanduser()
        if not self.dir.is_dir():
            raise PredictorError(f"inference directory {str(self.dir)!r} does not exist")
        self.info = read_export_config(self.dir)
        files = self.info["files"]
        for key in ("model", "params", "op_library"):
            if not (self.dir / files[key]).is_file():
                what = "operator library" if key == "op_library" else f"{key} file"
                raise PredictorError(f"{self.dir}: the {what} {files[key]} is missing; re-export "
                                     "the model with export_model.py")
        if "settings" not in self.info:
            raise PredictorError(f"{self.dir} was exported by an older fastergpt (one graph input "
                                 "per setting); re-export it with export_model.py")
        self.settings_layout = list(self.info["settings"])
        from fastergpt.config import GPTConfig

        self.architecture = GPTConfig.from_dict(self.info["model"]).architecture_string()
        dir_lib = self.dir / files["op_library"]
        recorded = self.info.get("op_library", {}).get("sha256")
        actual = library_sha256(dir_lib)
        if recorded == actual == library_sha256(op_library_path()):
            load_ops()  # the installed build: the directory's copy is not loaded
        elif trust_library:
            try:
                register_library(dir_lib)
            except RuntimeError as e:
                raise PredictorError(str(e)) from None
        else:
            why = ("does not match the hash its config.json recorded (changed after export)"
                   if recorded != actual else "is another build than the installed fastergpt's")
            raise PredictorError(
                f"{self.dir}: the operator library {files['op_library']} {why}; a directory's "
                "library is code, so it is not loaded: re-export with this fastergpt, or pass "
                "trust_library=True (--trust_library) if you trust where the directory came from")
        self.tokenizer = Tokenizer.from_dir(self.dir)
        self.defaults = dict(self.info["generation"])
        self.threads = int(threads)
        config = paddle.inference.Config(str(self.dir / files["model"]), str(self.dir / files["params"]))
        config.disable_gpu()
        config.disable_glog_info()
        if files["model"].endswith(".json"):
            config.enable_new_ir(True)
        try:
            self._predictor = paddle.inference.create_predictor(config)
        except (RuntimeError, OSError, ValueError) as e:
            raise PredictorError(
                f"{self.dir}: Paddle Inference cannot load {files['model']} + {files['params']} "
                f"({str(e).strip().splitlines()[0]}); if the files were damaged, re-export "
                "the model with export_model.py") from None
        self._inputs = self._predictor.get_input_names()
        # One Paddle predictor holds one set of input and output tensors: calls from
        # several threads take turns (feeding, running and reading under one lock).
        self._lock = threading.Lock()

    def generate(self, prompts: Optional[Sequence[str]] = None, input_ids=None,
                 attention_mask=None, stop=None, end_token_ids=None,
                 **settings) -> PredictorOutput:
        """Generate from text prompts or from token ids (left-padded, with a mask).
        Settings default to the directory's config.json `generation` entry. `stop`
        strings and `end_token_ids` end rows as in `FasterGPT.generate`; the texts are
        cut before the stop string."""
        from fastergpt.stops import (cut_at_stop, end_ids_array, normalize_end_ids,
                                     normalize_stops, stop_strings_array)

        if (prompts is None) == (input_ids is None):
            raise ValueError("give exactly one of prompts or input_ids")
        if prompts is not None:
            if isinstance(prompts, str):
                prompts = [prompts]
            ids, mask = self.tokenizer.encode_batch(prompts)
        else:
            ids = check_int_array(input_ids, "input_ids")
            mask = (np.ones_like(ids) if attention_mask is None
                    else check_int_array(attention_mask, "attention_mask"))
        values = over_defaults(dict(self.defaults, num_threads=self.threads), settings)
        values = resolve_settings(**values)
        ids, mask = ids.astype(np.int64), mask.astype(np.int64)
        stops, ends = normalize_stops(stop), normalize_end_ids(end_token_ids)
        if (stops or ends) and "stop_strings" not in self._inputs:
            raise PredictorError(f"{self.dir} was exported before stop strings and end_token_ids "
                                 "were graph inputs; re-export it with export_model.py")
        check_request(ids, mask, values, self.architecture, ends, stops,
                      self.tokenizer.vocabulary_bytes() if stops else None)
        feeds = {"input_ids": ids, "attention_mask": mask,
                 "settings": settings_vector(values, self.settings_layout),
                 "end_token_ids": end_ids_array(ends), "stop_strings": stop_strings_array(stops)}
        with self._lock:
            out_ids, lengths, scores, counts = self._run(feeds)
        texts = [cut_at_stop(self.tokenizer.decode(row[:n]), stops)
                 for row, n in zip(out_ids, lengths)]
        drafted, accepted = (None, None) if counts is None else (int(v) for v in counts)
        return PredictorOutput(texts, out_ids, lengths, scores, drafted, accepted)

    def _run(self, feeds: dict):
        for name in self._inputs:
            handle = self._predictor.get_input_handle(name)
            handle.reshape(feeds[name].shape)
            handle.copy_from_cpu(feeds[name])
        try:
            self._predictor.run()
        except OSError as e:
            raise op_error_to_value_error(e) from None
        except RuntimeError as e:
            # Paddle Inference replaces the operator's message with "std::exception".
            raise PredictorError(f"{self.dir}: the predictor failed ({e}); check the inputs "
                                 "and settings against the model's config.json") from None
        names = self._predictor.get_output_names()
        out = [self._predictor.get_output_handle(names[i]).copy_to_cpu() for i in (0, 1, 3)]
        # (An export made before the operator had its fifth output, prompt_lookup_counts.)
        counts = (self._predictor.get_output_handle(names[4]).copy_to_cpu()
                  if len(names) > 4 else None)
        return (*out, counts)


def check_request(ids: np.ndarray, mask: np.ndarray, values: dict, architecture: str,
                  end_token_ids=(), stop=(), vocabulary=None) -> None:
    """The engine's own argument checks, run before the predictor: Paddle Inference
    replaces an operator's error message with a bare "std::exception"."""
    from fastergpt.ops import engine_module

    engine_module().validate_request(ids, mask, architecture, settings_numbers(values),
                                     end_token_ids=list(end_token_ids), stop=list(stop),
                                     vocabulary=vocabulary)
