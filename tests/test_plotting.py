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


def test_label_points_keeps_crowded_labels_apart():
    """Two series whose last points nearly touch (lesson 06's roofline: batch 16 and 64): with every label at the same
    offset two of them overlap; label_points puts every label where it overlaps no other label, marker or the legend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from course_lib.learner.plotting import STYLE, label_points

    with matplotlib.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(6, 4))
        series = {"prefill": ([46.4, 120.6, 200.9, 241.1], [28.3, 34.0, 35.1, 42.8]),
                  "decode": ([0.40, 1.22, 2.54, 3.48], [1.65, 5.83, 9.23, 16.1])}
        for name, (xs, ys) in series.items():
            ax.loglog(xs, ys, "o", ls=":", label=name)
        ax.loglog([1e-2, 18.4, 1e3], [0.08, 151.8, 151.8], "k-", label="roofline")
        ax.legend(loc="upper left")
        placed = [a for xs, ys in series.values() for a in label_points(ax, xs, ys, ["B=1", "B=4", "B=16", "B=64"])]
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [a.get_window_extent(renderer) for a in placed]
        legend = ax.get_legend().get_window_extent(renderer)
        for i, a in enumerate(boxes):
            assert not a.overlaps(legend), f"{placed[i].get_text()} overlaps the legend"
            assert ax.get_window_extent(renderer).contains(a.x0, a.y0) and ax.get_window_extent(renderer).contains(a.x1, a.y1)
            for j, b in enumerate(boxes[i + 1:], i + 1):
                assert not a.overlaps(b), f"labels {placed[i].get_text()} and {placed[j].get_text()} overlap"
        # every label stays next to its own point: its nearest point is the one it names
        points = [ax.transData.transform((x, y)) for xs, ys in series.values() for x, y in zip(xs, ys)]
        for k, box in enumerate(boxes):
            centre = ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
            nearest = min(range(len(points)), key=lambda n: (points[n][0] - centre[0]) ** 2 + (points[n][1] - centre[1]) ** 2)
            assert nearest == k, f"{placed[k].get_text()} sits nearer another point"
        plt.close(fig)


def test_label_points_refuses_mismatched_lengths():
    import matplotlib.pyplot as plt

    from course_lib.learner.plotting import label_points

    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="as many labels as points"):
        label_points(ax, [1, 2], [1, 2], ["a"])
    plt.close(fig)
