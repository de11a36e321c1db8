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
