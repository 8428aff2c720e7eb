"""Measure one Whisper-base stack inside this process: memory and decode speed.

Run by ``bench.torch_bench`` in a fresh process per configuration:

- ``torch``: transformers' ``WhisperForConditionalGeneration`` with Whisper
  base dimensions and random weights (no Hugging Face weights exist
  offline), fp32, or with torch's dynamic int8 quantization of its Linear
  layers; run with the Python of the separate torch venv.
- ``ct2``: faster-whisper's ``WhisperModel`` (CTranslate2), the offline base
  model, int8; run with the project's Python.

Both decode the same 30 s window of the corpus with exactly ``--tokens``
generated tokens (end of text suppressed) and report RSS after the imports,
after the model load, and the peak while generating (VmHWM, reset with
/proc/self/clear_refs before the first generation). Only the standard
library is imported at the top, so the torch venv needs nothing else.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

SAMPLE_RATE = 16_000
WINDOW_S = 30
# Whisper base: the dimensions of openai/whisper-base.
BASE_DIMENSIONS = {
    "vocab_size": 51865,
    "num_mel_bins": 80,
    "d_model": 512,
    "encoder_layers": 6,
    "decoder_layers": 6,
    "encoder_attention_heads": 8,
    "decoder_attention_heads": 8,
    "encoder_ffn_dim": 2048,
    "decoder_ffn_dim": 2048,
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "decoder_start_token_id": 50258,
    "eos_token_id": 50257,
    "pad_token_id": 50257,
    "bos_token_id": 50257,
}
# <|startoftranscript|> <|en|> <|transcribe|> <|notimestamps|>
PROMPT = [50258, 50259, 50359, 50363]
END_OF_TEXT = 50257


def memory_mb() -> dict[str, float]:
    """This process's current and peak RSS in MiB."""
    status = Path("/proc/self/status").read_text()
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    return {k: int(v) / 1024 for k, v in found.items()}


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def window(audio: Path, offset_s: float) -> Any:
    """30 s of the recording as 16 kHz mono float32, decoded by ffmpeg."""
    import numpy as np

    cmd = [
        *("ffmpeg", "-nostdin", "-v", "error", "-ss", f"{offset_s}", "-t"),
        *(f"{WINDOW_S}", "-i", str(audio), "-ac", "1", "-ar", f"{SAMPLE_RATE}"),
        *("-f", "f32le", "-"),
    ]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32)


def timed(generate: Any, repeats: int) -> tuple[list[float], int]:
    """One warm-up generation, then ``repeats`` timed ones; seconds and tokens."""
    tokens = generate()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        tokens = generate()
        seconds.append(time.perf_counter() - started)
    return seconds, tokens


def probe_torch(args: argparse.Namespace, result: dict[str, Any]) -> None:
    import torch
    import transformers

    result["imported"] = memory_mb()["VmRSS"]
    transformers.logging.set_verbosity_error()
    result["versions"] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
    }
    torch.set_num_threads(args.threads)
    samples = window(args.audio, args.offset)
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    features = extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt")

    torch.manual_seed(0)
    config = transformers.WhisperConfig(**BASE_DIMENSIONS)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    if args.precision == "int8":
        model = torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear}, dtype=torch.qint8
        )
    result["loaded"] = memory_mb()["VmRSS"]

    prompt = torch.tensor([PROMPT])

    def generate() -> int:
        with torch.inference_mode():
            out = model.generate(
                input_features=features.input_features,
                decoder_input_ids=prompt,
                num_beams=args.beam,
                do_sample=False,
                min_new_tokens=args.tokens,
                max_new_tokens=args.tokens,
            )
        # Whisper's generate() leaves the prompt out of what it returns.
        echoed = out[0, : len(PROMPT)].tolist() == PROMPT
        return int(out.shape[-1]) - (len(PROMPT) if echoed else 0)

    reset_peak()
    seconds, tokens = timed(generate, args.repeats)
    result.update(peak=memory_mb()["VmHWM"], seconds=seconds, tokens=tokens)


def probe_ct2(args: argparse.Namespace, result: dict[str, Any]) -> None:
    import ctranslate2
    import faster_whisper
    from faster_whisper.feature_extractor import FeatureExtractor

    result["imported"] = memory_mb()["VmRSS"]
    result["versions"] = {
        "faster_whisper": faster_whisper.__version__,
        "ctranslate2": ctranslate2.__version__,
    }
    samples = window(args.audio, args.offset)
    features = FeatureExtractor(feature_size=80)(samples)[:, : WINDOW_S * 100]

    model = faster_whisper.WhisperModel(
        str(args.model), device="cpu", compute_type="int8", cpu_threads=args.threads
    )
    result["loaded"] = memory_mb()["VmRSS"]
    encoded = ctranslate2.StorageView.from_array(features[None].astype("float32"))

    def generate() -> int:
        out = model.model.generate(
            encoded,
            [PROMPT],
            beam_size=args.beam,
            # CTranslate2's Whisper stops at half of max_length (measured).
            max_length=2 * args.tokens,
            suppress_tokens=[-1, END_OF_TEXT],
            suppress_blank=False,
        )
        return len(out[0].sequences_ids[0])

    reset_peak()
    seconds, tokens = timed(generate, args.repeats)
    result.update(peak=memory_mb()["VmHWM"], seconds=seconds, tokens=tokens)


def main(argv: list[str] | None = None) -> None:
    started_mb = memory_mb()["VmRSS"]
    parser = argparse.ArgumentParser(
        prog="python -m bench.stack_probe", description=__doc__
    )
    parser.add_argument("stack", choices=("torch", "ct2"))
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--offset", type=float, default=60.0)
    parser.add_argument("--model", type=Path, help="CTranslate2 dir (ct2 only)")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    parser.add_argument("--beam", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    result: dict[str, Any] = {
        "stack": args.stack,
        "precision": "int8" if args.stack == "ct2" else args.precision,
        "beam": args.beam,
        "started": started_mb,
    }
    if args.stack == "torch":
        probe_torch(args, result)
    else:
        probe_ct2(args, result)
    if result["tokens"] != args.tokens:
        raise SystemExit(f"generated {result['tokens']} tokens, not {args.tokens}")
    result["median_s"] = statistics.median(result["seconds"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
