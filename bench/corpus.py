"""Build the benchmark recordings reproducibly, with their reference text.

``speech`` has espeak-ng (voice en-us) read the license texts that every
Debian machine carries under /usr/share/common-licenses, paragraph by
paragraph, until the target length is reached. The words spoken are written
beside the audio as the reference. The same Debian packages give the same
audio, byte for byte; the manifest records the versions and a SHA-256.

``loop`` repeats a recording to a longer one with ffmpeg, streaming (no
re-encoding, nothing held in memory), for the memory and resume benchmarks.

``librivox`` joins the five read-speech clips of pocketsphinx-testdata with
their transcription: real human speech, as a cross-check of the synthetic
corpus.

    python -m bench.corpus speech --minutes 20
    python -m bench.corpus loop --source bench/out/speech-20m.mp3 --minutes 180
    python -m bench.corpus librivox
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import subprocess
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

from bench.wer import spell_numbers

log = logging.getLogger(__name__)

OUT_DIR = Path(__file__).resolve().parent / "out"
LICENSES = Path("/usr/share/common-licenses")
# Read in this order; later ones only matter for targets past ~30 minutes.
SOURCES = ("GPL-3", "GPL-2", "LGPL-3", "Apache-2.0", "MPL-2.0", "GFDL-1.3")
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
VOICE = "en-us"
WORDS_PER_MINUTE = 175
PAUSE_S = 0.8
MIN_WORDS = 12
MP3_BITRATE = "64k"

_END_OF_TERMS = re.compile(r"END OF TERMS AND CONDITIONS")
_SKIP = re.compile(r"https?:|www\.|<|@|\(C\)|Copyright", re.IGNORECASE)
_ENUMERATION = re.compile(r"^\(?[0-9a-z]{1,2}[.)]\s+")
_INLINE_MARK = re.compile(r"\(\w\)")
_SPACE_BEFORE_MARK = re.compile(r"\s+([,.;:])")
_TRANSCRIPTION = re.compile(r"<s>(.*)</s>\s*\((\S+)\)")


def paragraphs(source: Path) -> Iterator[str]:
    """The prose paragraphs of one license, cleaned up to be read aloud."""
    text = source.read_text(encoding="utf-8")
    text = _END_OF_TERMS.split(text)[0]
    for raw in re.split(r"\n\s*\n", text):
        para = " ".join(raw.split())
        if not para or _SKIP.search(para):
            continue
        para = _ENUMERATION.sub("", para)
        para = _INLINE_MARK.sub("", para)
        para = para.replace("--", ", ").replace("/", " ").replace('"', "")
        if para.isupper():
            para = para.capitalize()
        para = _SPACE_BEFORE_MARK.sub(r"\1", " ".join(spell_numbers(para).split()))
        if len(para.split()) >= MIN_WORDS:
            yield para


def build_speech(minutes: float, out_dir: Path, *, force: bool = False) -> Path:
    """Speak license prose until ``minutes`` are reached; the MP3's path."""
    stem = out_dir / f"speech-{minutes:g}m"
    mp3, wav, ref = (stem.with_suffix(s) for s in (".mp3", ".wav", ".txt"))
    manifest = stem.with_suffix(".json")
    if mp3.is_file() and manifest.is_file() and not force:
        log.info("%s exists; --force rebuilds it", mp3)
        return mp3

    out_dir.mkdir(parents=True, exist_ok=True)
    target_s = minutes * 60
    spoken: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, wave.open(str(wav), "wb") as out:
        piece = Path(tmp) / "piece.wav"
        length_s = 0.0
        for source in SOURCES:
            for para in paragraphs(LICENSES / source):
                _espeak(para, piece)
                length_s += _append(out, piece, PAUSE_S)
                spoken.append(para)
                if length_s >= target_s:
                    break
            if length_s >= target_s:
                break
    ref.write_text("\n".join(spoken) + "\n", encoding="utf-8")
    _encode_mp3(wav, mp3)

    facts = {
        "audio": mp3.name,
        "wav": wav.name,
        "reference": ref.name,
        "duration_s": round(length_s, 3),
        "words": sum(len(p.split()) for p in spoken),
        "paragraphs": len(spoken),
        "voice": VOICE,
        "words_per_minute": WORDS_PER_MINUTE,
        "espeak_ng": _version(["espeak-ng", "--version"]),
        "ffmpeg": _version(["ffmpeg", "-version"]),
        "wav_sha256": _sha256(wav),
    }
    manifest.write_text(json.dumps(facts, indent=2) + "\n")
    log.info("wrote %s (%.0f s, %d words)", mp3, length_s, facts["words"])
    return mp3


def build_loop(source: Path, minutes: float, out_dir: Path) -> Path:
    """Repeat ``source`` to exactly ``minutes``, copying MP3 frames as they are."""
    target = out_dir / f"loop-{minutes:g}m{source.suffix}"
    if target.is_file():
        return target

    out_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.stem + ".partial" + target.suffix)
    cmd = [
        *("ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y"),
        *("-stream_loop", "-1", "-i", str(source)),
        *("-t", f"{minutes * 60:.3f}", "-c:a", "copy", str(partial)),
    ]
    subprocess.run(cmd, check=True)
    partial.replace(target)
    log.info("wrote %s (%g min)", target, minutes)
    return target


def build_librivox(out_dir: Path) -> Path:
    """The pocketsphinx LibriVox clips joined into one WAV, with reference."""
    wav = out_dir / "librivox.wav"
    lines = (LIBRIVOX / "transcription").read_text().splitlines()
    clips = [m for m in map(_TRANSCRIPTION.search, lines) if m]
    out_dir.mkdir(parents=True, exist_ok=True)
    with wave.open(str(wav), "wb") as out:
        for match in clips:
            _append(out, LIBRIVOX / f"{match.group(2)}.wav", PAUSE_S)
    text = "\n".join(" ".join(m.group(1).split()) for m in clips) + "\n"
    wav.with_suffix(".txt").write_text(text)
    return wav


def reference_for(audio: Path) -> str:
    """The reference text stored beside a corpus recording."""
    return audio.with_suffix(".txt").read_text(encoding="utf-8")


def _espeak(text: str, target: Path) -> None:
    cmd = ["espeak-ng", "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(target)]
    subprocess.run([*cmd, "--", text], check=True, capture_output=True)


def _append(out: wave.Wave_write, piece: Path, pause_s: float) -> float:
    """Copy one WAV's frames and a pause into ``out``; seconds appended."""
    with wave.open(str(piece), "rb") as src:
        if not _has_params(out):
            out.setparams(src.getparams())
        if (src.getframerate(), src.getnchannels()) != (
            out.getframerate(),
            out.getnchannels(),
        ):
            raise ValueError(f"{piece} differs in rate or channels from the corpus")
        frames = src.getnframes()
        out.writeframes(src.readframes(frames))
    silent = int(pause_s * out.getframerate())
    out.writeframes(b"\0" * silent * out.getsampwidth() * out.getnchannels())
    return (frames + silent) / out.getframerate()


def _has_params(out: wave.Wave_write) -> bool:
    try:
        out.getnchannels()
    except wave.Error:
        return False
    return True


def _encode_mp3(wav: Path, mp3: Path) -> None:
    cmd = [
        *("ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y"),
        *("-i", str(wav), "-ac", "1", "-c:a", "libmp3lame", "-b:a", MP3_BITRATE),
        str(mp3),
    ]
    subprocess.run(cmd, check=True)


def _version(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return result.stdout.splitlines()[0].strip()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.corpus", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    commands = parser.add_subparsers(dest="command", required=True)
    speech = commands.add_parser("speech", help="espeak-ng reading license prose")
    speech.add_argument("--minutes", type=float, default=20.0)
    speech.add_argument("--force", action="store_true")
    loop = commands.add_parser("loop", help="repeat a recording to a longer one")
    loop.add_argument("--source", type=Path, required=True)
    loop.add_argument("--minutes", type=float, required=True)
    commands.add_parser("librivox", help="pocketsphinx's LibriVox clips")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    if args.command == "speech":
        print(build_speech(args.minutes, args.out, force=args.force))
    elif args.command == "loop":
        print(build_loop(args.source, args.minutes, args.out))
    else:
        print(build_librivox(args.out))


if __name__ == "__main__":
    main()
