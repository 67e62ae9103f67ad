"""course_lib.plotting's family colours: one distinct colour per family, found from every spelling."""
import matplotlib.colors as mcolors
import pytest

from course_lib.families import SHORT_NAMES, Family
from course_lib.plotting import FAMILY_COLORS, family_color


def test_every_family_has_its_own_colour():
    assert set(FAMILY_COLORS) == {f.value for f in Family}
    rgb = {mcolors.to_hex(c) for c in FAMILY_COLORS.values()}
    assert len(rgb) == len(FAMILY_COLORS), "two families share a colour"


@pytest.mark.parametrize("spelling", [*SHORT_NAMES, "Encoder-Decoder", "prefix-LM", "encoder-only"])
def test_family_color_reads_every_spelling(spelling):
    assert family_color(spelling) == FAMILY_COLORS[Family(spelling).value]


def test_unknown_family_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown family"):
        family_color("transformer")
