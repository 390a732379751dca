"""Filter expressions, run for real against an in-memory SQLite library."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from audiosim.errors import FilterSyntaxError
from audiosim.library.filters import (
    FIELDS,
    MAX_COMPARISONS,
    MAX_DEPTH,
    And,
    Compare,
    Not,
    Or,
    compile_filter,
    describe_fields,
    parse_filter,
)
from audiosim.library.models import Asset, Base

MB = 1024**2
# name, folder, format, subtype, duration, sample_rate, channels, loudness, peak, centroid, size, segments
ROWS = [
    ("kick_01.wav", "/lib/drums", "WAV", "PCM_24", 0.35, 48000, 1, -12.0, -0.5, 1500.0, 150_000, 1),
    ("kick_02.wav", "/lib/drums", "WAV", "PCM_16", 0.6, 44100, 2, -20.0, -3.0, 900.0, 400_000, 2),
    ("snare_tight.flac", "/lib/drums", "FLAC", "PCM_16", 0.25, 96000, 2, -16.0, -1.0, 3500.0, 2_000_000, 1),
    ("50%_mix.wav", "/lib/fx", "WAV", "FLOAT", 4.0, 48000, 2, -25.0, -6.0, 2500.0, 5 * MB, 8),
    ("50ab mix [wet].aif", "/lib/fx", "AIFF", "PCM_24", 90.0, 44100, 2, -18.0, -2.0, 1800.0, 20_000_000, 180),
    ("it's \"loud\".wav", "/lib/fx", "WAV", "PCM_24", 1.5, 48000, 1, -9.0, 0.0, 4200.0, 300_000, 3),
    ("Ünïcode_ß.ogg", "/lib/ユニコード", "OGG", "VORBIS", 2.0, 48000, 2, -17.5, -1.5, 2100.0, 40_000, 4),
    ("broken.mp3", "/lib/fx", None, None, None, None, None, None, None, None, 1234, 0),
]
NAMES = [row[0] for row in ROWS]
ALL = set(NAMES)
KICK1, KICK2, SNARE, MIX, AB, LOUD, UNI, BROKEN = NAMES


@pytest.fixture(scope="module")
def engine():
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for i, (name, folder, fmt, sub, dur, sr, ch, loud, peak, cent, size, nseg) in enumerate(ROWS):
            failed = fmt is None
            session.add(Asset(
                path=f"{folder}/{name}", name=name, folder=folder, format=fmt, subtype=sub, duration=dur,
                sample_rate=sr, channels=ch, avg_loudness=loud, peak_db=peak, centroid=cent, size=size,
                n_segments=nseg, mtime=1_700_000_000.0 + i, status="failed" if failed else "indexed",
                error="could not decode: EOF" if failed else None,
            ))
        session.commit()
    yield engine
    engine.dispose()


def names(engine, expression) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(select(Asset.name).where(compile_filter(expression))))


def asset_count(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Asset))


@pytest.mark.parametrize(("expression", "expected"), [
    # numbers and units
    ("duration < 500ms", {KICK1, SNARE}),
    ("duration >= 1.5 s", {MIX, AB, LOUD, UNI}),
    ("duration > 1min", {AB}),
    ("duration > 1 MIN", {AB}),
    ("duration > 1e-1 and duration < 3e2", ALL - {BROKEN}),
    ("centroid > 2kHz", {SNARE, MIX, LOUD, UNI}),
    ("centroid <= 900 Hz", {KICK2}),
    ("avg_loudness > -18 dB", {KICK1, SNARE, LOUD, UNI}),
    ("loudness>-18LUFS", {KICK1, SNARE, LOUD, UNI}),
    ("peak >= -1dBFS", {KICK1, SNARE, LOUD}),
    ("peak_db = 0", {LOUD}),
    ("sample_rate = 44.1kHz", {KICK2, AB}),
    ("sr > 44100", {KICK1, SNARE, MIX, LOUD, UNI}),
    ("samplerate == 96 khz", {SNARE}),
    ("size > 1MB", {SNARE, MIX, AB}),
    ("size > 5 MB", {AB}),
    ("size <= 5MB", ALL - {AB}),
    ("size < 2KB", {BROKEN}),
    ("channels = 1", {KICK1, LOUD}),
    ("segments > 3", {MIX, AB, UNI}),
    ("n_segments != 1", ALL - {KICK1, SNARE}),
    ("id = 1", {KICK1}),
    ("mtime >= 1700000006", {UNI, BROKEN}),
    ("size > 99999999999999999999999", set()),
    # text
    ("format = wav", {KICK1, KICK2, MIX, LOUD}),
    ('format == "WAV" and channels == 2', {KICK2, MIX}),
    ("format != wav", {SNARE, AB, UNI}),
    ("status = FAILED", {BROKEN}),
    ("error ~ decode", {BROKEN}),
    ("error !~ decode", set()),
    ('folder = "/lib/fx" and not status = failed', {MIX, AB, LOUD}),
    ('path ~ "snare"', {SNARE}),
    ('path ~ "SNARE"', {SNARE}),
    ("name = kick_01.wav", {KICK1}),
    ("name = KICK_01.WAV", set()),
    ('name ~ "*.wav"', {KICK1, KICK2, MIX, LOUD}),
    ('name ~ "*.WAV"', {KICK1, KICK2, MIX, LOUD}),
    ('name !~ "*.wav"', {SNARE, AB, UNI, BROKEN}),
    ('name ~ "kick_??.wav"', {KICK1, KICK2}),
    ("name ~ kick?01*", {KICK1}),
    ('path ~ "/lib/*/k*"', {KICK1, KICK2}),
    # % and _ are literal characters, not wildcards
    ('name ~ "%"', {MIX}),
    ('name ~ "50%_mix"', {MIX}),
    ('name ~ "50%_mix*"', {MIX}),
    ('name ~ "_"', {KICK1, KICK2, SNARE, MIX, UNI}),
    ('name ~ "[wet]"', {AB}),
    # quotes and escapes
    ('name ~ "it\'s"', {LOUD}),
    ("name ~ 'it\\'s'", {LOUD}),
    ('name ~ "\\"loud\\""', {LOUD}),
    ("name = 'it\\'s \"loud\".wav'", {LOUD}),
    ('name = "it\'s \\"loud\\".wav"', {LOUD}),
    # non-ASCII
    ("name ~ Ünï", {UNI}),
    ('folder ~ "ユニ"', {UNI}),
    ('name ~ "*ß.ogg"', {UNI}),
    # precedence, parentheses, not
    ("format = flac or format = wav and channels = 1", {SNARE, KICK1, LOUD}),
    ("(format = flac or format = wav) and channels = 1", {KICK1, LOUD}),
    ("format = wav || format = flac && sr = 96kHz", {KICK1, KICK2, MIX, LOUD, SNARE}),
    ("FORMAT = wav AND NOT channels = 2", {KICK1, LOUD}),
    ("not format = wav", {SNARE, AB, UNI, BROKEN}),
    ("!(peak > -1) && !(segments = 1)", {KICK2, MIX, AB, UNI, BROKEN}),
    ("not not duration < 1", {KICK1, KICK2, SNARE}),
    ("not (duration < 1 or status = failed)", {MIX, AB, LOUD, UNI}),
    ("not (duration < 1 and channels = 2)", ALL - {KICK2, SNARE}),
    ("((((duration < 1))))", {KICK1, KICK2, SNARE}),
])
def test_filter_selects_expected_assets(engine, expression, expected):
    assert names(engine, expression) == expected


@pytest.mark.parametrize("expression", [
    "duration < 1", "format = wav", "error ~ decode", "name ~ \"*.wav\"", "loudness > -18 and peak < -1",
    "centroid > 2kHz or format != wav", "error !~ decode",
])
def test_not_is_the_complement_even_with_missing_values(engine, expression):
    matched, negated = names(engine, expression), names(engine, f"not ({expression})")
    assert matched | negated == ALL
    assert not matched & negated


def test_missing_values_never_match_a_comparison(engine):
    for expression in ["duration < 1", "duration >= 1", "duration != 1", "format != wav", "peak = 0"]:
        assert BROKEN not in names(engine, expression)


def test_parse_normalises_fields_operators_and_units():
    assert parse_filter("Loudness == -18.5 LUFS") == Compare("avg_loudness", "=", -18.5)
    assert parse_filter("duration<500ms") == Compare("duration", "<", 0.5)
    assert parse_filter("size > 1.5 MB") == Compare("size", ">", 1.5 * MB)
    assert parse_filter("sr >= 2kHz") == Compare("sample_rate", ">=", 2000)
    assert parse_filter("duration < 2 min") == Compare("duration", "<", 120.0)
    assert parse_filter("name ~ x") == Compare("name", "~", "x")
    assert parse_filter("id = 1 and id = 2 or not id = 3") == Or((
        And((Compare("id", "=", 1), Compare("id", "=", 2))), Not(Compare("id", "=", 3))))
    assert parse_filter("id = 1 and (id = 2 and id = 3)") == And((
        Compare("id", "=", 1), And((Compare("id", "=", 2), Compare("id", "=", 3)))))
    assert compile_filter(parse_filter("id = 1")) is not None


@pytest.mark.parametrize(("expression", "position", "words"), [
    ("duration > and", 11, "unexpected 'and' at column 12: expected a value"),
    ("duration > 3 dB", 13, "does not fit duration"),
    ("duration > 3dB", 12, "does not fit duration"),
    ("channels > 2 kHz", 13, "takes no unit"),
    ("durtion < 3", 0, "did you mean 'duration'"),
    ("duration < 1 and bogus = 2", 17, "unknown field 'bogus'"),
    ("(duration < 1", 13, "unexpected end of filter: expected ')'"),
    ("duration < 1 or", 15, "unexpected end of filter"),
    ("duration <", 10, "expected a value"),
    ('name = "abc', 7, "unterminated string"),
    ("name = 'abc\\'", 7, "unterminated string"),
    ("name < 3", 5, "is text"),
    ("duration ~ 3", 9, "is a number"),
    ('duration = "3"', 11, "is a number"),
    ("duration = abc", 11, "expected a number"),
    ("duration < 1 ;", 13, "unexpected ';'"),
    ("duration < 5 6", 13, "unexpected '6'"),
    ("name = kick drum", 12, "quotes"),
    ("size > 1e400", 7, "out of range"),
    ("size > 1" + "0" * 5000, 7, "out of range"),
    ("duration < 1 )", 13, "unexpected ')'"),
    ('"name" = x', 0, "expected a field name"),
    ("", 0, "empty filter"),
    ("   ", 3, "empty filter"),
    ('name = "a\x00b"', 7, "NUL"),
    ("name = \ud800", 7, "invalid character"),
])
def test_errors_point_at_the_offending_token(expression, position, words):
    with pytest.raises(FilterSyntaxError) as info:
        compile_filter(expression)
    assert info.value.position == position
    assert words in info.value.reason
    assert "\n" not in info.value.reason


@pytest.mark.parametrize("expression", [
    "(" * 10_000 + "id = 1" + ")" * 10_000,
    "not " * 10_000 + "id = 1",
    "!" * 50_000 + "id = 1",
    "(" * 10_000 + "id = 1",
])
def test_deep_nesting_is_refused_quickly(expression):
    start = time.perf_counter()
    with pytest.raises(FilterSyntaxError) as info:
        parse_filter(expression)
    assert time.perf_counter() - start < 5
    assert "nested too deeply" in info.value.reason or "unexpected end" in info.value.reason


@pytest.mark.parametrize(("unit", "close"), [
    ("(", ")"), ("not ", ""), ("(id = 1 or id = 2 and ", ")"), ("not (id = 1 or not id = 2 and ", ")"),
    ("(peak < 1 or not (peak > 1 and ", "))"), ('(error ~ "a" or not ', ")"),
])
def test_deepest_accepted_filters_still_run(engine, unit, close):
    def nested(n: int) -> str:
        return unit * n + "duration < 1" + close * n

    n = 0
    while True:
        try:
            parse_filter(nested(n + 1))
        except FilterSyntaxError as exc:
            assert "nested too deeply" in exc.reason
            break
        n += 1
    assert n < MAX_DEPTH
    names(engine, nested(n))  # SQLite's own parser stack must not overflow


def test_many_comparisons(engine):
    assert names(engine, " or ".join(["id = 1"] * MAX_COMPARISONS)) == {KICK1}
    with pytest.raises(FilterSyntaxError, match="too long"):
        parse_filter(" or ".join(["id = 1"] * (MAX_COMPARISONS + 1)))


def test_literals_are_bound_parameters_never_sql_text():
    expression = ('name ~ "zq_secret%x" or path = "/zz/other\'; DROP TABLE assets; --" or duration > 12345.678 '
                  'or format = "FMTLIT" or size < 987654')
    compiled = select(Asset).where(compile_filter(expression)).compile(dialect=sqlite.dialect())
    sql = str(compiled)
    for text in ("zq_secret", "/zz/other", "DROP", "12345", "FMTLIT", "987654"):
        assert text not in sql
    values = {str(value) for value in compiled.params.values()}
    assert {"%zq\\_secret\\%x%", "/zz/other'; DROP TABLE assets; --", "12345.678", "FMTLIT"} <= values


def test_injection_attempts_are_just_values(engine):
    assert names(engine, "name = \"'; DROP TABLE assets; --\"") == set()
    assert names(engine, "name ~ \"x' OR 1=1 --\"") == set()
    assert asset_count(engine) == len(ROWS)


def test_field_table_and_help():
    assert FIELDS["loudness"] is FIELDS["avg_loudness"]
    assert FIELDS["sr"].name == "sample_rate"
    text = describe_fields()
    for spec in FIELDS.values():
        assert spec.name in text
    assert "kHz" in text and "LUFS" in text


# --- properties ---------------------------------------------------------------------------------------

HOSTILE = st.sampled_from([
    "duration", "name", "path", "format", "loudness", "sr", "size", "id", "status", "error", "bogus",
    "<", "<=", ">", ">=", "=", "==", "!=", "~", "!~", "and", "or", "not", "AND", "&&", "||", "!",
    "(", ")", '"', "'", '"x"', "'it''s'", "\\", ";", "--", "/*", "*/", "DROP TABLE assets", "'; DROP TABLE",
    "OR 1=1", "%", "_", "*", "?", "[", "1", "-18", "1e3", "1e400", "99999999999999999999999", "500ms",
    "2kHz", "dB", "LUFS", "MB", "ß", "ユニ", "\u00a0", "\x00", "\n", "NULL", "SELECT", "0x1F", ".5", "-",
])
COMPARISON = st.sampled_from([  # whole comparisons, so that what joins them gets exercised too
    "duration < 1", "id = 1", 'name ~ "a*"', "error !~ x", "loudness > -18 LUFS", "size<2MB", "sr=48kHz",
    "not format = wav", "(peak > -1)", "name = '; DROP TABLE assets; --",
])
CONNECTIVE = st.sampled_from(["and", "or", "&&", "||", "and not", "or !", "AND (", ") or", ")", "(", ";", ""])
HOSTILE_TEXT = st.one_of(
    st.tuples(COMPARISON, st.lists(st.tuples(CONNECTIVE, st.one_of(COMPARISON, COMPARISON, HOSTILE)),
                                   max_size=5)).map(lambda t: " ".join([t[0], *(" ".join(p) for p in t[1])])),
    st.lists(HOSTILE | st.text(max_size=3), max_size=12).map(" ".join),
    st.lists(HOSTILE, max_size=12).map("".join),
    st.text(max_size=30),
)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=HOSTILE_TEXT)
def test_hostile_text_compiles_and_runs_or_raises_filter_syntax_error(engine, expression):
    try:
        names(engine, expression)
    except FilterSyntaxError as exc:
        assert exc.position is None or 0 <= exc.position <= len(expression)
    assert asset_count(engine) == len(ROWS)


_NUMBER_FIELDS = sorted({spec.name for spec in FIELDS.values() if spec.kind == "number"})
_TEXT_FIELDS = sorted({spec.name for spec in FIELDS.values() if spec.kind == "string"})
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_LEAVES = st.one_of(
    st.builds(Compare, st.sampled_from(_NUMBER_FIELDS), st.sampled_from(["<", "<=", ">", ">=", "=", "!="]),
              st.integers(-(2**63) + 1, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(Compare, st.sampled_from(_TEXT_FIELDS), st.sampled_from(["=", "!=", "~", "!~"]), _TEXT),
)
_TREES = st.recursive(_LEAVES, lambda kids: st.one_of(
    st.builds(Not, kids),
    st.lists(kids, min_size=2, max_size=3).map(lambda c: And(tuple(c))),
    st.lists(kids, min_size=2, max_size=3).map(lambda c: Or(tuple(c))),
), max_leaves=8)


@settings(deadline=None, max_examples=200)
@given(tree=_TREES)
def test_rendered_ast_parses_back_to_itself(tree):
    assert parse_filter(str(tree)) == tree


def _ascii_lower(text: str) -> str:
    return text.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"))


def _python_match(pattern: str, name: str) -> bool:
    """What `name ~ pattern` means, with SQLite's ASCII-only case folding."""
    pattern, name = _ascii_lower(pattern), _ascii_lower(name)
    if "*" not in pattern and "?" not in pattern:
        return pattern in name
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


_PIECES = st.sampled_from(NAMES).flatmap(lambda n: st.tuples(
    st.just(n), st.integers(0, len(n)), st.integers(0, len(n))).map(lambda t: t[0][min(t[1:]):max(t[1:])]))
_GLOBBED = st.tuples(_PIECES, st.lists(st.tuples(st.integers(0, 20), st.sampled_from("*?")), max_size=3)).map(
    lambda t: _insert(*t))


def _insert(text: str, inserts: list[tuple[int, str]]) -> str:
    for index, char in inserts:
        index = min(index, len(text))
        text = text[:index] + char + text[index + 1:]
    return text


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(_TEXT, _PIECES, _GLOBBED, st.sampled_from(NAMES)))
def test_text_matches_equal_the_python_predicate(engine, text):
    assert names(engine, f"name = {_quoted(text)}") == {n for n in NAMES if n == text}
    assert names(engine, f"name ~ {_quoted(text)}") == {n for n in NAMES if _python_match(text, n)}
    assert names(engine, f"name !~ {_quoted(text)}") == {n for n in NAMES if not _python_match(text, n)}
