package main

import (
	"encoding/json"
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
}
