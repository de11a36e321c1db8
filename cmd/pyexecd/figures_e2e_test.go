package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/jail"
)

func TestE2E_Figures(t *testing.T) { inEveryMode(t, testE2EFigures) }

// testE2EFigures checks, through the real jail, that matplotlib works with
// no set-up in the script.
func testE2EFigures(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, nil)

	t.Run("matplotlib draws off-screen with the font list built at install time", func(t *testing.T) {
		r := s.run("import io, os\n"+
			"def main():\n"+
			"    cached = sorted(n for n in os.listdir(os.environ['MPLCONFIGDIR']) if n.startswith('fontlist'))\n"+
			"    import matplotlib\n"+
			"    import matplotlib.font_manager as fm\n"+
			"    import matplotlib.pyplot as plt\n"+
			"    fig, ax = plt.subplots()\n"+
			"    ax.bar(['a', 'b'], [1, 2])\n"+
			"    ax.set_title('sales')\n"+
			"    plt.show()\n"+
			"    buf = io.BytesIO()\n"+
			"    fig.savefig(buf, format='png')\n"+
			"    return {'backend': matplotlib.get_backend(), 'cached': len(cached),\n"+
			"            'png': buf.getvalue()[:8].hex(), 'font': os.path.basename(fm.findfont('DejaVu Sans'))}\n", 0)
		require.Equal(t, 200, r.Status)
		require.Nil(t, r.Body.Error)
		var got struct {
			Backend string `json:"backend"`
			Cached  int    `json:"cached"`
			PNG     string `json:"png"`
			Font    string `json:"font"`
		}
		require.NoError(t, json.Unmarshal(r.Body.Result, &got))
		assert.Equal(t, "agg", strings.ToLower(got.Backend))
		assert.Equal(t, 1, got.Cached, "the font list is in MPLCONFIGDIR before the script imports matplotlib")
		assert.Equal(t, "89504e470d0a1a0a", got.PNG, "a PNG")
		assert.Equal(t, "DejaVuSans.ttf", got.Font)
		assert.NotContains(t, r.Body.Stderr, "building the font cache")
		s.healthy()
	})
	t.Run("open figures come back as PNG, in order, and a huge one is refused", func(t *testing.T) {
		r := s.run("import matplotlib.pyplot as plt\n"+
			"def main():\n"+
			"    fig, ax = plt.subplots(figsize=(4, 3), dpi=50)\n"+
			"    ax.bar(['Oslo', 'Bergen'], [3, 5])\n"+
			"    plt.show()\n"+
			"    plt.figure(figsize=(200, 200), dpi=100)\n"+
			"    plt.figure(figsize=(2, 1), dpi=100).gca().plot([1, 2])\n"+
			"    return 'drawn'\n", 0)
		require.Equal(t, 200, r.Status)
		require.Nil(t, r.Body.Error)
		assert.JSONEq(t, `"drawn"`, string(r.Body.Result))
		assert.Empty(t, r.Body.Stderr, "plt.show() neither fails nor warns")
		require.Len(t, r.Body.Figures, 3)
		for i, want := range [][2]int{{200, 150}, {20000, 20000}, {200, 100}} {
			f := r.Body.Figures[i]
			assert.Equal(t, want, [2]int{f.Width, f.Height}, "figure %d", i)
			if i == 1 {
				assert.Nil(t, f.PNG)
				assert.Contains(t, f.Omitted, "20000 x 20000 pixels is over the 16777216-pixel limit")
				continue
			}
			assert.Empty(t, f.Omitted)
			cfg, err := png.DecodeConfig(bytes.NewReader(f.PNG))
			require.NoError(t, err, "figure %d decodes as a PNG", i)
			assert.Equal(t, want, [2]int{cfg.Width, cfg.Height})
		}
		s.healthy()
	})
	t.Run("no figure, no figures", func(t *testing.T) {
		r := s.run("import matplotlib.pyplot as plt\n"+
			"def main():\n"+
			"    plt.figure()\n"+
			"    plt.close('all')\n"+
			"    return 1\n", 0)
		require.Nil(t, r.Body.Error)
		assert.Empty(t, r.Body.Figures)
	})
}
