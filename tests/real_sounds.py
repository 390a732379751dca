"""Real recorded and sampled sounds from Debian packages, labelled, for evaluations that users would trust.

Nothing is downloaded at run time: the sounds come from packages the set-up installs with apt
(``DEBIAN_PACKAGES``). Drum one-shots are rendered note by note from General MIDI drum kits
(``fluidsynth`` for SoundFonts, ``timidity`` for freepats) and taken from sonic-pi's named samples;
instrument notes are rendered from GM programs. Every file is labelled with its **class** (kick, snare, …
or an instrument family) and its **source** (the SoundFont or sample pack it came from), so that an
evaluation can count only neighbours from *another* source, as a user's library mixes packs.

Public API
----------
``DRUM_SOURCES``, ``INSTRUMENT_SOURCES``: source name -> how to render it (only installed ones are used).
``available_sources(names) -> [name]``: the sources whose files and renderer are installed here.
``make_drum_corpus(root, *, sources=None, kits=None) -> {path: Label}``
``make_instrument_corpus(root, *, sources=None, pitches=...) -> {path: Label}``
``make_real_mix(path, clips, *, gap_seconds=(0.5, 2.0), seed=0) -> [(clip, start, end)]``
    A long file of real clips one after another with silences between them.
Results are cached under ``root`` (a manifest), so a second call with the same arguments only reads it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

DEBIAN_PACKAGES = ("fluidsynth", "timidity", "sonic-pi-samples", "avldrums.lv2-soundfont", "freepats",
                   "fluid-soundfont-gm", "musescore-general-soundfont-small", "csound-soundfont",
                   "timgm6mb-soundfont")

SF2 = Path("/usr/share/sounds/sf2")
SONIC_PI = Path("/usr/share/sonic-pi/samples")
HYDROGEN_KITS = Path("/usr/share/hydrogen/data/drumkits")  # hydrogen-drumkits: training data only
FREEPATS_CFG = Path("/etc/timidity/freepats.cfg")
RATE = 44100


@dataclasses.dataclass(frozen=True)
class Label:
    cls: str  # what a listener would call it: "kick", "snare", … or an instrument family
    source: str  # the recordings it comes from: neighbours from the same source are not counted
    kit: str  # the font or pack, and the kit or program inside it, e.g. "fluidr3/jazz"

    def to_json(self) -> list[str]:
        return [self.cls, self.source, self.kit]


# --- General MIDI drum map: class -> notes -------------------------------------------------------------
# The classes a listener names without hesitation (the GM map's own names in brackets).
DRUM_NOTES: dict[str, tuple[int, ...]] = {
    "kick": (35, 36),  # acoustic bass drum, bass drum 1
    "snare": (38, 40),  # acoustic, electric
    "rimshot": (37,),  # side stick
    "clap": (39,),
    "hat": (42, 44, 46),  # closed, pedal, open
    "tom": (41, 45, 48),  # low floor, low, hi-mid
    "cymbal": (49, 57, 51, 59),  # crash 1 and 2, ride 1 and 2
}

# GM kits (bank 128 program) worth rendering; a SoundFont that lacks one falls back to Standard, which
# only repeats it within the same source (harmless: same-source neighbours never count).
GM_KITS = {"standard": 0, "room": 8, "power": 16, "electronic": 24, "tr808": 25, "jazz": 32, "brush": 40,
           "orchestra": 48}


@dataclasses.dataclass(frozen=True)
class _SoundFont:
    path: Path
    kits: dict[str, int]  # kit name -> GM program on the drum channel; {} for a one-preset kit font
    source: str  # the family it belongs to: fonts that share recordings are one source
    renderer: str = "fluidsynth"
    velocities: tuple[int, ...] = (50, 90, 127)


# Fonts that share recordings count as one source, so that a "neighbour from another source" is never
# the same recording: MuseScore General grew out of FluidR3; TimGM6mb and sf_GMbank share their drum
# samples; the two AVL kits share their cymbals (measured: identical features across the pair).
DRUM_SOURCES: dict[str, _SoundFont | str] = {
    "fluidr3": _SoundFont(SF2 / "FluidR3_GM.sf2", GM_KITS, "fluid"),
    "musescore": _SoundFont(Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"), GM_KITS, "fluid"),
    "timgm6mb": _SoundFont(SF2 / "TimGM6mb.sf2", GM_KITS, "gm6"),
    "gmbank": _SoundFont(SF2 / "sf_GMbank.sf2", GM_KITS, "gm6"),
    # Multi-sampled acoustic kits: five velocity layers each.
    "blackpearl": _SoundFont(SF2 / "Black_Pearl_4_LV2.sf2", {}, "avl", velocities=(30, 55, 80, 105, 127)),
    "redzeppelin": _SoundFont(SF2 / "Red_Zeppelin_4_LV2.sf2", {}, "avl", velocities=(30, 55, 80, 105, 127)),
    "freepats": _SoundFont(FREEPATS_CFG, {"standard": 0}, "freepats", renderer="timidity"),
    "sonicpi": "sonicpi",
}

# sonic-pi's named drum samples (the file name says what it is).
SONIC_PI_DRUMS: dict[str, tuple[str, ...]] = {
    "kick": ("bd_808", "bd_ada", "bd_boom", "bd_fat", "bd_gas", "bd_haus", "bd_klub", "bd_mehackit", "bd_pure",
             "bd_sone", "bd_tek", "bd_zome", "bd_zum", "drum_bass_hard", "drum_bass_soft", "drum_heavy_kick",
             "elec_hollow_kick", "elec_soft_kick"),
    "snare": ("sn_dolf", "sn_dub", "sn_generic", "sn_zome", "drum_snare_hard", "drum_snare_soft", "elec_snare",
              "elec_hi_snare", "elec_lo_snare", "elec_mid_snare", "elec_filt_snare"),
    "hat": ("drum_cymbal_closed", "drum_cymbal_pedal", "drum_cymbal_open"),
    "cymbal": ("drum_cymbal_hard", "drum_cymbal_soft", "drum_splash_hard", "drum_splash_soft"),
    "tom": ("drum_tom_hi_hard", "drum_tom_hi_soft", "drum_tom_mid_hard", "drum_tom_mid_soft", "drum_tom_lo_hard",
            "drum_tom_lo_soft"),
}

# Hydrogen kit instruments: class <- name pattern, first match wins; names matching the exclusion are other
# instruments (or articulations a listener would not file under the class).
_HYDROGEN_RULES = (("rimshot", r"\bstick\b|rim ?click|side ?stick"), ("clap", r"clap"),
                   ("kick", r"kick|bass ?drum|\bbd\b"), ("snare", r"snare|redo"), ("hat", r"hat|\bo?hh\b"),
                   ("tom", r"\btom"), ("cymbal", r"crash|ride|splash|china|cymbal"))
_HYDROGEN_EXCLUDE = r"roll|bell|choke|swish|flink|tamb|agogo|shaker|conga|clave|whistle|zap|fx|free"
_HYDROGEN_SKIPPED_KITS = {"The Black Pearl 1.0",  # the AVL Black Pearl's recordings: held out
                          "Gimme A Hand 1.0", "belofilms_GuitarStrums", "circAfrique v4"}  # no drum kit

# GM instrument families: family -> programs, and the pitches that suit them.
INSTRUMENT_FAMILIES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "piano": ((0, 1, 4), (48, 60, 72)),
    "mallet": ((11, 12, 13), (60, 72, 84)),  # vibraphone, marimba, xylophone
    "organ": ((16, 19), (48, 60, 72)),
    "guitar": ((24, 25, 26), (45, 57, 64)),
    "bass": ((32, 33, 34), (33, 40, 45)),
    "strings": ((40, 42, 48), (55, 62, 69)),
    "brass": ((56, 57, 61), (53, 60, 67)),
    "reed": ((65, 68, 71), (55, 62, 69)),  # alto sax, oboe, clarinet
    "flute": ((73, 72, 75), (67, 74, 81)),  # flute, piccolo, pan flute
}
INSTRUMENT_SOURCES: dict[str, _SoundFont] = {
    "fluidr3": _SoundFont(SF2 / "FluidR3_GM.sf2", {}, "fluid"),
    "musescore": _SoundFont(Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"), {}, "fluid"),
    "timgm6mb": _SoundFont(SF2 / "TimGM6mb.sf2", {}, "gm6"),
    "gmbank": _SoundFont(SF2 / "sf_GMbank.sf2", {}, "gm6"),
    "freepats": _SoundFont(FREEPATS_CFG, {}, "freepats", renderer="timidity"),
}


def available_sources(names: Iterable[str], table: dict | None = None) -> list[str]:
    """The sources of ``names`` whose files and renderer are installed on this machine."""
    table = DRUM_SOURCES if table is None else table
    found = []
    for name in names:
        spec = table[name]
        if isinstance(spec, str):
            if SONIC_PI.is_dir():
                found.append(name)
        elif spec.path.exists() and shutil.which(spec.renderer):
            found.append(name)
    return found


def missing_packages() -> list[str]:
    """Debian packages of ``DEBIAN_PACKAGES`` that are not installed (empty when all are)."""
    missing = []
    for pkg in DEBIAN_PACKAGES:
        proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if "install ok installed" not in proc.stdout:
            missing.append(pkg)
    return missing


# --- a minimal Standard MIDI File writer -----------------------------------------------------------------
_TICKS_PER_SECOND = 960  # division 480 at 120 bpm


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, events: Sequence[tuple[float, bytes]]) -> None:
    """A format-0 MIDI file of ``(time_seconds, message_bytes)`` events (sorted by time here)."""
    track = bytearray()
    now = 0
    for t, message in sorted(events, key=lambda e: e[0]):
        tick = int(round(t * _TICKS_PER_SECOND))
        track += _varlen(tick - now) + message
        now = tick
    track += _varlen(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480)
    tempo = b"\x00\xff\x51\x03" + (500000).to_bytes(3, "big")
    body = tempo + bytes(track)
    path.write_bytes(header + b"MTrk" + struct.pack(">I", len(body)) + body)


def _render(spec: _SoundFont, midi: Path, wav: Path) -> np.ndarray:
    """Render ``midi`` with the source's synthesiser; mono float64 at ``RATE``."""
    if spec.renderer == "timidity":
        cmd = ["timidity", "-c", str(spec.path), "-Ow", "-s", str(RATE), "-EFreverb=0", "-EFchorus=0",
               "--output-mono", "-A100", "-o", str(wav), str(midi)]
    else:
        cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6", "-r", str(RATE), "-F", str(wav),
               str(spec.path), str(midi)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0 or not wav.exists():
        raise RuntimeError(f"{cmd[0]} failed on {spec.path}: {proc.stderr[-500:]}")
    audio, rate = sf.read(str(wav), always_2d=True)
    assert rate == RATE, rate
    return audio.mean(axis=1)


_SLOT = 4.0  # seconds between notes: cymbals ring out before the next one


def _slice_notes(audio: np.ndarray, count: int, *, max_seconds: float = 3.5) -> list[np.ndarray | None]:
    """Cut the render into one clip per note slot, trimmed after its sound ends; None for a silent slot."""
    clips = []
    slot = int(_SLOT * RATE)
    for i in range(count):
        x = audio[i * slot: i * slot + int(max_seconds * RATE)]
        if len(x) == 0 or np.max(np.abs(x)) < 10 ** (-50 / 20):
            clips.append(None)
            continue
        env = np.abs(x)
        loud = np.flatnonzero(env > np.max(env) * 10 ** (-60 / 20))
        first, last = loud[0], loud[-1]
        start = max(0, first - int(0.002 * RATE))
        stop = min(len(x), last + int(0.05 * RATE))
        clips.append(x[start:stop])
    return clips


def _write(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    peak = float(np.max(np.abs(x)))
    if peak > 0.999:  # a hot render clipped in float: scale, as a sample editor would on export
        x = x * (0.999 / peak)
    sf.write(str(path), x.astype(np.float32), RATE, subtype="PCM_16")


def _note_events(slots: Sequence[tuple[int, int, int, int, int]], *,
                 hold: float = _SLOT - 0.3) -> list[tuple[float, bytes]]:
    """MIDI events for ``(channel, bank, program, note, velocity)`` per slot, one slot every ``_SLOT`` s,
    each note held for ``hold`` seconds."""
    events: list[tuple[float, bytes]] = []
    current: dict[int, tuple[int, int]] = {}
    for i, (channel, bank, program, note, velocity) in enumerate(slots):
        t = i * _SLOT
        if current.get(channel) != (bank, program):
            events.append((max(0.0, t - 0.5), bytes([0xB0 | channel, 0, bank & 0x7F])))
            events.append((max(0.0, t - 0.5), bytes([0xC0 | channel, program])))
            current[channel] = (bank, program)
        events.append((t, bytes([0x90 | channel, note, velocity])))
        events.append((t + hold, bytes([0x80 | channel, note, 0])))
    return events


def _cached(root: Path, key: dict) -> dict[Path, Label] | None:
    manifest = root / "manifest.json"
    try:
        doc = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if doc.get("key") != key:
        return None
    files = {root / rel: Label(*label) for rel, label in doc["files"].items()}
    return files if all(p.exists() for p in files) else None


def _save_manifest(root: Path, key: dict, files: dict[Path, Label]) -> None:
    doc = {"key": key, "files": {str(p.relative_to(root)): label.to_json() for p, label in files.items()}}
    (root / "manifest.json").write_text(json.dumps(doc, indent=1))


def make_drum_corpus(root: Path, *, sources: Sequence[str] | None = None,
                     kits: Sequence[str] | None = None) -> dict[Path, Label]:
    """Real drum one-shots as ``root/<source>/<kit>/<class>/<name>.wav``, labelled.

    ``sources`` defaults to every installed one; ``kits`` limits the GM kits per SoundFont.
    """
    root = Path(root)
    sources = available_sources(sources or DRUM_SOURCES)
    key = {"what": "drums", "sources": list(sources), "kits": list(kits or GM_KITS), "version": 2}
    cached = _cached(root, key)
    if cached is not None:
        return cached
    root.mkdir(parents=True, exist_ok=True)
    files: dict[Path, Label] = {}
    for source in sources:
        spec = DRUM_SOURCES[source]
        if isinstance(spec, str):
            files.update(_sonic_pi_drums(root))
            continue
        kit_programs = {k: spec.kits[k] for k in (kits or spec.kits) if k in spec.kits} or {"kit": None}
        slots, labels = [], []
        for kit, program in kit_programs.items():
            for cls, notes in DRUM_NOTES.items():
                for note in notes:
                    for velocity in spec.velocities:
                        channel, bank, prog = (9, 128, program) if program is not None else (0, 0, 0)
                        slots.append((channel, bank, prog, note, velocity))
                        labels.append((kit, cls, f"{cls}_n{note}_v{velocity}"))
        files.update(_render_slots(root, source, spec, slots, labels))
    _save_manifest(root, key, files)
    return files


def _render_slots(root: Path, source: str, spec: _SoundFont, slots: list, labels: list, *,
                  hold: float = _SLOT - 0.3, kit_folders: bool = True) -> dict[Path, Label]:
    """Render one note per slot and write each as ``root/source/[kit/]class/name.wav``, labelled;
    ``labels`` holds ``(kit, class, name)`` per slot."""
    files: dict[Path, Label] = {}
    with tempfile.TemporaryDirectory(prefix="audiosim-render-") as tmp:
        midi, wav = Path(tmp) / "notes.mid", Path(tmp) / "render.wav"
        write_midi(midi, _note_events(slots, hold=hold))
        audio = _render(spec, midi, wav)
    for clip, (kit, cls, name) in zip(_slice_notes(audio, len(slots)), labels):
        if clip is None:
            continue
        path = (root / source / kit if kit_folders else root / source) / cls / f"{name}.wav"
        _write(path, clip)
        files[path] = Label(cls, spec.source, f"{source}/{kit}")
    return files


def _sonic_pi_drums(root: Path) -> dict[Path, Label]:
    files = {}
    for cls, names in SONIC_PI_DRUMS.items():
        for name in names:
            src = SONIC_PI / f"{name}.flac"
            if src.exists():
                dst = root / "sonicpi" / "pack" / cls / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                files[dst] = Label(cls, "sonicpi", "sonicpi/pack")
    return files


def hydrogen_label(instrument: str) -> str | None:
    """The drum class a listener gives a Hydrogen kit instrument from its name, or None for anything else
    (cowbells, shakers, rolls, chokes, bells, effects …)."""
    name = instrument.lower()
    if re.search(_HYDROGEN_EXCLUDE, name):
        return None
    for cls, pattern in _HYDROGEN_RULES:
        if re.search(pattern, name):
            return cls
    return None


def make_hydrogen_corpus(root: Path, *, layers: int = 3) -> dict[Path, Label]:
    """Real drum one-shots from the Hydrogen drum kits Debian ships, as ``root/hydrogen/<kit>/<class>/…``.

    Each kit's instruments are labelled from their names (:func:`hydrogen_label`); of an instrument's
    velocity layers the softest, the middle and the hardest are kept (``layers``). Kits that share
    recordings are one source (the three "Millo" kits); "The Black Pearl" is left out: its recordings are
    the AVL Black Pearl kit's, a held-out source of the evaluation."""
    root = Path(root)
    key = {"what": "hydrogen", "layers": layers, "version": 1}
    cached = _cached(root, key)
    if cached is not None:
        return cached
    files: dict[Path, Label] = {}
    for kit_dir in sorted(HYDROGEN_KITS.glob("*/drumkit.xml")):
        kit = kit_dir.parent.name
        if kit in _HYDROGEN_SKIPPED_KITS:
            continue
        source = "h:millo" if kit.lower().startswith("millo") else f"h:{kit}"
        for instrument, samples in _hydrogen_instruments(kit_dir):
            cls = hydrogen_label(instrument)
            if cls is None:
                continue
            picks = sorted({samples[0], samples[len(samples) // 2], samples[-1]}, key=samples.index)[:layers]
            for sample in picks:
                slug = re.sub(r"[^a-z0-9]+", "-", instrument.lower()).strip("-")
                dst = root / "hydrogen" / re.sub(r"\W+", "_", kit) / cls / f"{slug}_{sample.name}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(sample, dst)
                files[dst] = Label(cls, source, f"hydrogen/{kit}")
    if files:
        _save_manifest(root, key, files)
    return files


def _hydrogen_instruments(drumkit_xml: Path) -> list[tuple[str, list[Path]]]:
    """``(instrument name, [sample files, softest layer first])`` of a Hydrogen ``drumkit.xml`` (both the
    layered format and the older one with a single file per instrument)."""
    import xml.etree.ElementTree as ET

    root = ET.parse(drumkit_xml).getroot()
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    out = []
    for inst in root.iter(f"{ns}instrument"):
        names = [layer.findtext(f"{ns}filename") for layer in inst.iter(f"{ns}layer")]
        names = names or [inst.findtext(f"{ns}filename")]
        samples = [drumkit_xml.parent / n for n in names if n and (drumkit_xml.parent / n).is_file()]
        if samples:
            out.append((inst.findtext(f"{ns}name") or "", samples))
    return out


def make_instrument_corpus(root: Path, *, sources: Sequence[str] | None = None,
                           velocity: int = 100, seconds: float = 1.5) -> dict[Path, Label]:
    """Real instrument notes (GM programs at a few pitches) as ``root/<source>/<family>/<name>.wav``."""
    root = Path(root)
    sources = available_sources(sources or INSTRUMENT_SOURCES, INSTRUMENT_SOURCES)
    key = {"what": "instruments", "sources": list(sources), "velocity": velocity, "seconds": seconds,
           "version": 2}
    cached = _cached(root, key)
    if cached is not None:
        return cached
    root.mkdir(parents=True, exist_ok=True)
    files: dict[Path, Label] = {}
    for source in sources:
        spec = INSTRUMENT_SOURCES[source]
        slots, labels = [], []
        for family, (programs, pitches) in INSTRUMENT_FAMILIES.items():
            for program in programs:
                for pitch in pitches:
                    slots.append((0, 0, program, pitch, velocity))
                    labels.append((f"p{program}", family, f"{family}_p{program}_n{pitch}"))
        files.update(_render_slots(root, source, spec, slots, labels, hold=seconds, kit_folders=False))
    _save_manifest(root, key, files)
    return files


def make_real_mix(path: Path, clips: Sequence[Path], *, gap_seconds: tuple[float, float] = (0.5, 2.0),
                  seed: int = 0) -> list[tuple[Path, float, float]]:
    """The clips one after another at ``RATE`` (mono, 16-bit WAV) with random silences between them.

    Returns ``[(clip, start, end)]`` in seconds in the mix.
    """
    rng = np.random.default_rng(seed)
    parts, placed = [], []
    t = 0
    for clip in clips:
        x, rate = sf.read(str(clip), always_2d=True)
        x = x.mean(axis=1)
        if rate != RATE:
            import soxr

            x = soxr.resample(x, rate, RATE)
        gap = np.zeros(int(rng.uniform(*gap_seconds) * RATE))
        parts += [gap, x]
        start = t + len(gap)
        placed.append((Path(clip), start / RATE, (start + len(x)) / RATE))
        t = start + len(x)
    parts.append(np.zeros(int(gap_seconds[0] * RATE)))
    mix = np.concatenate(parts)
    peak = float(np.max(np.abs(mix)))
    if peak > 0.999:
        mix *= 0.999 / peak
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), mix.astype(np.float32), RATE, subtype="PCM_16")
    return placed


def label_counts(files: dict[Path, Label]) -> dict[str, dict[str, int]]:
    """``{source: {class: count}}`` — what a corpus holds."""
    out: dict[str, dict[str, int]] = {}
    for label in files.values():
        out.setdefault(label.source, {}).setdefault(label.cls, 0)
        out[label.source][label.cls] += 1
    return out


if __name__ == "__main__":  # quick look: python -m tests.real_sounds DIR
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="real-sounds-"))
    drums = make_drum_corpus(target / "drums")
    instruments = make_instrument_corpus(target / "instruments")
    print(json.dumps({"drums": label_counts(drums), "instruments": label_counts(instruments)}, indent=1))
    print(f"{len(drums)} drum files, {len(instruments)} instrument notes under {target}", file=sys.stderr)
