"""matplotlib in the harness: the font list built at install time."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import harness  # noqa: E402


def test_font_list_is_copied_into_mplconfigdir(tmp_path, monkeypatch):
    shipped = tmp_path / "site" / harness.FONT_CACHE_DIR
    shipped.mkdir(parents=True)
    (shipped / "fontlist-v9.json").write_text('{"_version": "9"}')
    conf = tmp_path / "conf"
    conf.mkdir()
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(tmp_path / "site")])
    monkeypatch.setenv("MPLCONFIGDIR", str(conf))
    monkeypatch.delitem(sys.modules, "matplotlib.font_manager", raising=False)
    harness.seed_font_cache()
    assert (conf / "fontlist-v9.json").read_text() == '{"_version": "9"}'
    # One the script (or matplotlib) already wrote is left alone.
    (conf / "fontlist-v9.json").write_text("mine")
    harness.seed_font_cache()
    assert (conf / "fontlist-v9.json").read_text() == "mine"


def test_the_virtualenv_ships_a_font_list_of_matplotlib_s_own_fonts():
    import json
    import sysconfig
    import matplotlib.font_manager as fm
    path = os.path.join(sysconfig.get_path("purelib"), harness.FONT_CACHE_DIR,
                        "fontlist-v%s.json" % fm.FontManager.__version__)
    with open(path) as f:
        data = json.load(f)
    names = [e["fname"] for e in data["ttflist"]]
    assert any(n.endswith("DejaVuSans.ttf") for n in names)
    # Relative to mpl-data: no host font directory, which the jail does not show.
    assert all(not os.path.isabs(n) for n in names), names


# ---------------------------------------------------------------------------
# Figures left open when main returns

import base64  # noqa: E402
import io  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from test_harness import Proc  # noqa: E402,F401


@pytest.fixture(autouse=True)
def no_figures():
    plt.close("all")
    yield
    plt.close("all")


def image(entry):
    return Image.open(io.BytesIO(base64.b64decode(entry["png"])))


def test_open_figures_come_back_as_png_in_creation_order_and_are_closed():
    fig, ax = plt.subplots()  # 6.4 x 4.8 in at 100 dpi
    ax.bar(["a", "b"], [1, 2])
    plt.figure(figsize=(3, 2), dpi=50)
    plt.plot([1, 2, 3])
    got = harness.collect_figures({})
    assert [(e["width"], e["height"]) for e in got] == [(640, 480), (150, 100)]
    for e in got:
        img = image(e)
        assert img.format == "PNG"
        assert img.size == (e["width"], e["height"])
        assert "omitted" not in e
    assert plt.get_fignums() == []


def test_a_huge_figure_is_refused_before_it_is_drawn():
    fig = plt.figure(figsize=(200, 200), dpi=100)  # 20,000 x 20,000 pixels

    def never(*a, **k):
        raise AssertionError("drawn")

    fig.savefig = never
    plt.figure(figsize=(2, 1), dpi=100)
    got = harness.collect_figures({"max_figure_pixels": 4096 * 4096})
    assert got[0] == {"width": 20000, "height": 20000,
                      "omitted": "20000 x 20000 pixels is over the 16777216-pixel limit: use a smaller figsize or dpi"}
    assert image(got[1]).size == (200, 100)
    assert plt.get_fignums() == []


def test_figures_past_the_count_cap_are_counted_not_drawn():
    for _ in range(5):
        plt.figure(figsize=(1, 1))
    got = harness.collect_figures({"max_figures": 3})
    assert len(got) == 4
    assert all("png" in e for e in got[:3])
    assert got[3] == {"width": 0, "height": 0, "omitted": "2 more figures over the limit of 3, not drawn"}
    assert plt.get_fignums() == []


def test_figures_past_the_byte_budget_say_so():
    plt.figure(figsize=(2, 2)).gca().plot([1, 2])
    plt.figure(figsize=(2, 2)).gca().plot([2, 1])
    first = harness.collect_figures({})[0]["png"]
    plt.figure(figsize=(2, 2)).gca().plot([1, 2])
    plt.figure(figsize=(2, 2)).gca().plot([2, 1])
    got = harness.collect_figures({"max_output_bytes": len(first) + 10})
    assert "png" in got[0]
    assert got[1]["omitted"].startswith("the PNG is over the")


def test_a_script_s_figures_are_in_the_reply_and_show_is_harmless():
    p = Proc()
    try:
        r = p.ask("import matplotlib.pyplot as plt\n"
                  "def main():\n"
                  "    plt.bar(['x', 'y'], [3, 4])\n"
                  "    plt.show()\n"
                  "    return 1\n")
    finally:
        p.close()
    assert r["error"] is None and r["result"] == 1
    assert [(f["width"], f["height"]) for f in r["figures"]] == [(640, 480)]
    assert image(r["figures"][0]).size == (640, 480)
    assert r["stderr"] == ""


def test_no_figures_no_field():
    p = Proc()
    try:
        r = p.ask("def main():\n    return 1\n")
    finally:
        p.close()
    assert "figures" not in r


def test_preload_list():
    assert harness.preload_list(None) == ["numpy", "pandas"]
    assert harness.preload_list(" numpy, matplotlib.pyplot ,,") == ["numpy", "matplotlib.pyplot"]
    assert harness.preload_list("none") == []
