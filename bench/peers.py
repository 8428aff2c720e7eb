"""The peers our pipeline is measured against, each run in a fresh process.

``whole``: faster-whisper's ``WhisperModel.transcribe()`` on the whole file,
with the library's defaults apart from the shared settings (no VAD).
``batched``: faster-whisper's ``BatchedInferencePipeline`` (VAD on, its
default) with a batch size.

All use the same model directory, int8, beam 5, English and thread count as
our pipeline. The result (text and the process's own timings) is written as
JSON to ``--result``; the caller measures wall time and memory from outside.

    python -m bench.peers whole AUDIO --model DIR --result OUT.json
    python -m bench.peers batched AUDIO --batch-size 8 --model DIR --result OUT.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def transcribe(args: argparse.Namespace) -> dict[str, object]:
    """Load the model, transcribe the file, and return text and timings."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    started = time.monotonic()
    model = WhisperModel(
        str(args.model),
        device="cpu",
        compute_type="int8",
        cpu_threads=args.threads,
    )
    loaded = time.monotonic()

    options = {"language": args.language, "beam_size": args.beam_size}
    if args.peer == "batched":
        pipeline = BatchedInferencePipeline(model)
        pieces, info = pipeline.transcribe(
            str(args.audio), batch_size=args.batch_size, **options
        )
    else:
        pieces, info = model.transcribe(str(args.audio), **options)
    text = " ".join(piece.text.strip() for piece in pieces)
    finished = time.monotonic()

    return {
        "peer": args.peer,
        "batch_size": args.batch_size if args.peer == "batched" else None,
        "audio_s": info.duration,
        "load_s": loaded - started,
        "transcribe_s": finished - loaded,
        "text": text,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    parser.add_argument("peer", choices=("whole", "batched"))
    parser.add_argument("audio", type=Path)
    parser.add_argument("--model", type=Path, required=True, help="CTranslate2 dir")
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--beam-size", type=int, default=5)
    parser.add_argument("--language", default="en")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    result = transcribe(args)
    args.result.write_text(json.dumps(result, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
