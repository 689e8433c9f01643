import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcsub.encoding import GridParseError, UnknownCodecError, all_codecs, get_codec


@st.composite
def grids(draw, max_side=30):
    rows = draw(st.integers(1, max_side))
    cols = draw(st.integers(1, max_side))
    cells = st.lists(st.integers(0, 9), min_size=cols, max_size=cols).map(tuple)
    return tuple(draw(st.lists(cells, min_size=rows, max_size=rows)))


@pytest.mark.parametrize("codec", all_codecs(), ids=lambda c: c.name)
@settings(max_examples=60, deadline=None)
@given(
    grid=grids(),
    trailing=st.sampled_from(["", "\n", "\n\nthat is the answer", "<|im_end|>", "\nok 123", " <|im_end|>", "```"]),
)
def test_round_trip_with_trailing_text(codec, grid, trailing):
    assert codec.decode(codec.encode(grid) + trailing) == grid


def test_presets_and_names():
    assert get_codec("minimal").encode(((1, 2), (3, 4))) == "12\n34"
    assert get_codec("arc24").encode(((1, 2),)) == "```\n1x2\n1 12\n```"
    assert get_codec("spaced+rownum").encode(((1, 2),)) == "1 1 2"
    assert get_codec("fence+shape+rownum").name == "arc24"
    assert get_codec("comma").name == "digits+comma"


@pytest.mark.parametrize(
    "spec, text, message",
    [
        ("minimal", "12\n3", "row 1 has 1 cells but row 0 has 2"),
        ("minimal", "12\n3x", "row 1 has 1 cells but row 0 has 2"),
        ("minimal", "12\n3 4", "row 1 has 1 cells"),
        ("minimal", "", "no grid rows"),
        ("minimal", "the answer is", "no grid rows"),
        ("minimal", "\n".join(["1"] * 31), "more than 30 rows"),
        ("minimal", "1" * 31, "31 cells"),
        ("shape", "2x2\n12\n", "says 2 rows, found 1"),
        ("shape", "1x3\n12", "says 3 columns, found 2"),
        ("shape", "31x1\n1", "outside"),
        ("fence", "```\n12\n34", "closing"),
        ("fence", "12\n34\n```", "opening"),
        ("rownum", "1 12\n3 34", "numbered '3', expected 2"),
        ("spaced", "1 2\n3 45", "not a row of digits"),
    ],
)
def test_parsers_reject_bad_grids(spec, text, message):
    with pytest.raises(GridParseError, match=message):
        get_codec(spec).decode(text)


def test_unknown_codec_parts_are_named():
    with pytest.raises(UnknownCodecError, match="unknown codec part"):
        get_codec("minimal+zigzag")
    with pytest.raises(UnknownCodecError, match="two cell separators"):
        get_codec("spaced+comma")
