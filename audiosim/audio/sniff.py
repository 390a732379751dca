"""Recognise audio containers (and common non-audio files) by their first bytes."""

from __future__ import annotations

import os

_W64_GUID = bytes.fromhex("726966662e91cf11a5d628db04c10000")
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_PREFIXES = (
    (b"fLaC", "flac"), (b"OggS", "ogg"), (b"ID3", "mp3"), (b"wvpk", "wavpack"), (b"MAC ", "ape"),
    (b"caff", "caf"), (b".snd", "au"), (b"\x1a\x45\xdf\xa3", "matroska"), (b"#!AMR", "amr"),
    (b"\x0b\x77", "ac3"), (b"DSD ", "dsf"), (b"FRM8", "dff"), (b"NIST_1A", "nist"),
    (b"Creative Voice File", "voc"), (_W64_GUID, "w64"), (_ASF_GUID, "asf"),
)
_NOT_AUDIO = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive"), (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"), (b"Rar!", "a RAR archive"), (b"\x7fELF", "an executable"),
    (b"SQLite format 3\x00", "an SQLite database"),
)


def _mpeg_sync(head: bytes) -> str | None:
    """MPEG audio or ADTS AAC frame header at offset 0, with the reserved values rejected."""
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    b1, b2 = head[1], head[2]
    if b1 & 0xF6 == 0xF0:  # 12-bit sync + layer 00: ADTS
        return "aac" if (b2 >> 2) & 0x0F < 13 else None
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    if version == 1 or layer == 0 or b2 >> 4 == 0x0F or (b2 >> 2) & 3 == 3:
        return None
    return "mp3"


def container_kind(head: bytes) -> str | None:
    """The audio container ``head`` starts like, or ``None``."""
    magic, form = head[:4], head[8:12]
    if magic in (b"RIFF", b"RIFX", b"RF64", b"BW64") and form == b"WAVE":
        return "wav"
    if magic == b"FORM" and form in (b"AIFF", b"AIFC", b"8SVX"):
        return "aiff"
    if head[4:8] == b"ftyp":
        return "mp4"
    for prefix, name in _PREFIXES:
        if head.startswith(prefix):
            return name
    return _mpeg_sync(head)


def non_audio_kind(head: bytes) -> str | None:
    """``"text"``, ``"a PNG image"``, ... when ``head`` is recognisably something other than audio."""
    for prefix, name in _NOT_AUDIO:
        if head.startswith(prefix):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if not head or b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # only a multi-byte character cut at the end is forgiven
            return None
        text = head[: exc.start].decode("utf-8")
    controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\t\n\r\f\v")
    return "text" if controls <= len(text) // 100 else None


def read_head(path: str, size: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def sniff_audio(path: str | os.PathLike) -> bool:
    """True if the file's first bytes look like a known audio container.

    Recognises RIFF/RIFX/RF64/BW64 WAVE, Wave64, AIFF/AIFC, FLAC, Ogg, ID3 and MPEG/ADTS frame sync,
    MP4/M4A (``ftyp``), ASF/WMA, WavPack, Monkey's Audio, CAF, Sun ``.snd``, Matroska/WebM, AMR, AC-3,
    DSF/DFF, NIST and VOC. Never raises: unreadable paths give ``False``.
    """
    try:
        return container_kind(read_head(os.fspath(path), 64)) is not None
    except (OSError, ValueError, TypeError):
        return False


# ---------------------------------------------------------------------------------------------------------
# Streams.
