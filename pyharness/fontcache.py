"""Builds matplotlib's font list at install time, into the virtualenv.

matplotlib scans the fonts it can use on first import and saves the list in
its cache directory; in the jail that is the tmpfs (MPLCONFIGDIR), emptied
after every script, so each script would pay for the scan again. This writes
the list once into a directory on the interpreter's import path (which the
jail shows read-only), and the harness copies it into MPLCONFIGDIR before a
script runs.

Only the fonts matplotlib ships are listed: the jail does not show the
host's font directories, and a listed font the jail cannot open would make
matplotlib scan again.

Usage: python fontcache.py  (with the virtualenv's interpreter)
"""

import os
import sys
import sysconfig
import tempfile

DIR_NAME = "pyexec_fontcache"  # harness.FONT_CACHE_DIR


def main():
    with tempfile.TemporaryDirectory() as scratch:
        # Whatever the import itself builds goes to scratch and is dropped.
        os.environ["MPLCONFIGDIR"] = scratch
        import matplotlib.font_manager as fm

        system_fonts = fm.findSystemFonts

        def shipped_only(fontpaths=None, fontext="ttf"):
            return system_fonts(fontpaths, fontext) if fontpaths else []

        fm.findSystemFonts = shipped_only
        manager = fm.FontManager()
    out_dir = os.path.join(sysconfig.get_path("purelib"), DIR_NAME)
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "fontlist-v%s.json" % fm.FontManager.__version__)
    fm.json_dump(manager, out)
    os.chmod(out, 0o644)
    print("font list: %d fonts in %s" % (len(manager.ttflist), out), file=sys.stderr)


if __name__ == "__main__":
    main()
