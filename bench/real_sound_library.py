"""A library of real sounds from Debian packages, for benchmarks that must be felt as a user feels them.

    apt-get install sonic-pi-samples fluidsynth fluid-soundfont-gm   # once (the set-up of this bench)
    .venv/bin/python bench/real_sound_library.py DIR                 # → DIR/sounds (audio), DIR/library

The sounds: every sample of ``sonic-pi-samples`` (recorded drums, tabla, bass, ambience, loops …) plus
one-second notes rendered with ``fluidsynth`` from each General MIDI soundfont found in
``/usr/share/sounds/sf2`` (a few instrument programs at a few pitches, and the GM drum kit). The library
is built with the CLI (``audiosim --library DIR/library index DIR/sounds``), as a user would.
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
from pathlib import Path

SONIC_PI = Path("/usr/share/sonic-pi/samples")
SOUNDFONTS = Path("/usr/share/sounds/sf2")
# GM programs (0-based) from different families: piano, organ, guitar, bass, strings, brass, reed, pipe, synth
PROGRAMS = {"piano": 0, "organ": 19, "guitar": 25, "bass": 33, "strings": 48, "brass": 61, "reed": 65,
            "flute": 73, "synth_lead": 81}
PITCHES = (40, 52, 64, 76)
DRUMS = {"kick": 36, "snare": 38, "clap": 39, "closed_hat": 42, "open_hat": 46, "low_tom": 45,
         "crash": 49, "ride": 51, "cowbell": 56}


def _midi_one_note(program: int | None, note: int, *, channel: int) -> bytes:
    """A standard MIDI file (format 0, 480 ticks per beat at 120 bpm): one note held for one second."""
    events = b""
    if program is not None:
        events += bytes([0x00, 0xC0 | channel, program])
    events += bytes([0x00, 0x90 | channel, note, 100])
    events += bytes([0x87, 0x40, 0x80 | channel, note, 0])  # delta 960 ticks = 1 s, note off
    events += bytes([0x83, 0x60, 0xFF, 0x2F, 0x00])  # 480 ticks of release tail, end of track
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480)
    return header + b"MTrk" + struct.pack(">I", len(events)) + events


def render_notes(out: Path) -> int:
    """Render GM notes and drums from every soundfont; returns how many files were written."""
    if shutil.which("fluidsynth") is None:
        return 0
    written = 0
    midi = out / "_note.mid"
    out.mkdir(parents=True, exist_ok=True)
    for font in sorted(p for p in SOUNDFONTS.glob("*.sf2") if not p.is_symlink()):
        jobs = [(f"{name}_{pitch}", prog, pitch, 0) for name, prog in PROGRAMS.items() for pitch in PITCHES]
        jobs += [(name, None, note, 9) for name, note in DRUMS.items()]
        folder = out / font.stem
        folder.mkdir(exist_ok=True)
        for name, program, note, channel in jobs:
            wav = folder / f"{name}.wav"
            if wav.exists():
                continue
            midi.write_bytes(_midi_one_note(program, note, channel=channel))
            subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.8", "-F", str(wav), "-r", "44100", str(font),
                            str(midi)], check=True, capture_output=True)
            written += 1
    midi.unlink(missing_ok=True)
    return written


def build(root: Path) -> Path:
    """Sounds under ``root/sounds`` and a library indexed from them at ``root/library``; returns the library."""
    sounds = root / "sounds"
    (sounds / "sonic-pi").mkdir(parents=True, exist_ok=True)
    for sample in sorted(SONIC_PI.glob("*.flac")):
        target = sounds / "sonic-pi" / sample.name
        if not target.exists():
            target.symlink_to(sample)
    render_notes(sounds / "fluidsynth")
    library = root / "library"
    # The CLI's report goes to stderr: a caller printing JSON on stdout must not get it mixed in.
    subprocess.run([sys.executable, "-m", "audiosim", "--library", str(library), "index", str(sounds)],
                   check=True, stdout=sys.stderr)
    return library


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    args = parser.parse_args()
    if not SONIC_PI.is_dir():
        sys.exit("sonic-pi-samples is not installed: apt-get install sonic-pi-samples fluidsynth "
                 "fluid-soundfont-gm")
    print(build(args.root))


if __name__ == "__main__":
    main()
