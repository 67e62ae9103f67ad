"""course_lib.learner.plotting's family colours: one distinct colour per family, found from every spelling."""
import matplotlib.colors as mcolors
import pytest

from course_lib.families import SHORT_NAMES, Family
from course_lib.learner.plotting import FAMILY_COLORS, family_color


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


def _visible_labels(ax, axis):
    """(text, bounding box) of the tick labels matplotlib draws on one axis, major and minor."""
    ax.figure.canvas.draw()
    target = ax.xaxis if axis == "x" else ax.yaxis
    ticks = target.get_major_ticks() + target.get_minor_ticks()
    lo, hi = sorted(getattr(ax, f"get_{axis}lim")())
    out = []
    for t in ticks:
        label = t.label1
        if label.get_visible() and label.get_text() and lo <= t.get_loc() <= hi:
            out.append((label.get_text(), label.get_window_extent()))
    return out


@pytest.mark.parametrize("axis", ["x", "y"])
@pytest.mark.parametrize("ticks", [None, [25, 50, 100, 200, 400, 800]])
def test_log_axis_labels_do_not_overlap(axis, ticks):
    """On an axis spanning about 1.5 decades matplotlib's default log labels include minor ticks that collide;
    log_axis leaves plain-number labels at the given ticks (or 1-2-5 per decade) and none of them overlap."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from course_lib.learner.plotting import log_axis

    fig, ax = plt.subplots(figsize=(5, 3))
    values = [25, 50, 100, 200, 400, 800]
    ax.plot(values, values) if axis == "x" else ax.plot(values, values)
    log_axis(ax, axis, ticks=ticks)
    labels = _visible_labels(ax, axis)
    texts = [t for t, _ in labels]
    assert texts == ([str(v) for v in ticks] if ticks else ["50", "100", "200", "500"])
    boxes = [b for _, b in labels]
    for a, b in zip(boxes, boxes[1:]):
        assert not a.overlaps(b), f"tick labels overlap: {texts}"
    assert getattr(ax, f"get_{axis}scale")() == "log"
    plt.close(fig)


def test_log_axis_refuses_an_unknown_axis():
    import matplotlib.pyplot as plt

    from course_lib.learner.plotting import log_axis

    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="axis must be 'x' or 'y'"):
        log_axis(ax, "z")
    plt.close(fig)
