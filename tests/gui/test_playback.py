"""Click a result, hear exactly that segment: checked on the samples ALSA was given (a file capture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

from tests.conftest import ROOT, run_cli
from tests.gui.conftest import asoundrc


def test_clicking_a_result_plays_exactly_that_segment(tmp_path):
    from tests.corpus import make_long_file

    music = tmp_path / "music"
    music.mkdir()
    long_file = make_long_file(music / "long take.wav", 20.0, seed=4, channels=1)
    library = tmp_path / "library"
    assert run_cli("index", music, library=library).code == 0
    home = tmp_path / "home"
    capture = tmp_path / "played.raw"
    asoundrc(home, capture)
    env = {**os.environ, "HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-m", "tests.gui.playback_probe", str(library), str(long_file),
                           "6.3", "8.1", str(tmp_path / "settings.ini")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    clicked = json.loads(proc.stdout.strip().splitlines()[-1])
    assert clicked["path"] == str(long_file)

    data, rate = sf.read(long_file, dtype="float32", always_2d=True)
    first = int(round(clicked["start"] * rate))
    stop = int(round(clicked["end"] * rate))
    segment = data[first:stop, 0]
    assert abs(clicked["start"] - 6.3) < 0.1 and len(segment) > rate  # the region asked for, found again

    # PortAudio opened ALSA as interleaved float32 stereo at the file's rate; mono goes to both channels.
    assert clicked["rate"] == rate
    played = np.fromfile(capture, dtype="<f4").reshape(-1, 2)
    assert np.array_equal(played[:, 0], played[:, 1])
    played = played[:, 0]
    sound = np.flatnonzero(played)
    assert len(sound), "nothing was played"
    begin = sound[0] - int(np.flatnonzero(segment)[0])
    got = played[begin:begin + len(segment)]
    assert np.array_equal(got, segment), "the samples played are not exactly the segment"
    # ... and nothing of its neighbours: silence before and after.
    assert not played[:begin].any() and not played[begin + len(segment):].any()
    print(f"\nclick-to-sound latency {clicked['latency'] * 1000:.1f} ms (ALSA file device)")
    assert clicked["latency"] < 0.05
