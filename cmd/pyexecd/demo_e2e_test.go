package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/jail"
	"github.com/pyexec/pyexec/wire"
)

// demoBody is the README's data in, data out example, verbatim: args and a
// CSV in; the grouped CSV, a chart and the JSON result out.
const demoBody = `{
  "script": "import pandas as pd\nimport matplotlib.pyplot as plt\ndef main(region, top=3):\n    df = pd.read_csv(\"data/sales.csv\")\n    s = df[df[\"region\"] == region].groupby(\"city\")[\"amount\"].sum().nlargest(top)\n    s.to_csv(\"output/summary.csv\")\n    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)\n    ax.bar(s.index, s.values)\n    ax.set_title(f\"Top {top} cities, {region}\")\n    return s",
  "args": {"region": "north", "top": 2},
  "files": [{"path": "data/sales.csv", "content": "city,region,amount\nOslo,north,3\nBergen,north,5\nOslo,north,4\nTromsø,north,1\nMadrid,south,9\n"}]}`

func TestE2E_Demo(t *testing.T) { inEveryMode(t, testE2EDemo) }

// TestREADME_DemoIsTheTestedRequest keeps the README's curl example the
// body the end-to-end test sends.
func TestREADME_DemoIsTheTestedRequest(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	assert.Contains(t, string(data), "-d '"+demoBody+"'")
}

func testE2EDemo(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, nil)
	res, err := http.Post(s.base+"/execute", "application/json", strings.NewReader(demoBody))
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode, "%s", body)
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(body, &raw))
	var out wire.Response
	require.NoError(t, json.Unmarshal(body, &out))

	require.Nil(t, out.Error)
	assert.JSONEq(t, `{"Oslo": 7, "Bergen": 5}`, string(out.Result), "north's top two, largest first")
	assert.Empty(t, out.Stderr, "pandas and matplotlib neither fail nor warn")

	assert.JSONEq(t, `[{"path": "summary.csv", "size": 28, "media_type": "text/csv", "encoding": "utf-8",
		"content": "city,amount\nOslo,7\nBergen,5\n"}]`, string(raw["files"]), "output/summary.csv, and nothing else")
	assert.NotContains(t, raw, "files_left_out")

	require.Len(t, out.Figures, 1)
	fig := out.Figures[0]
	assert.Equal(t, "image/png", fig.MediaType)
	assert.Empty(t, fig.Omitted)
	assert.Equal(t, [2]int{400, 300}, [2]int{fig.Width, fig.Height}, "figsize (4, 3) at 100 dpi")
	img, err := png.Decode(bytes.NewReader(fig.Data))
	require.NoError(t, err, "the figure is a whole PNG")
	assert.Equal(t, [2]int{fig.Width, fig.Height}, [2]int{img.Bounds().Dx(), img.Bounds().Dy()}, "the stated size is the image's")
	// A chart, not a blank canvas: many pixels differ from the corner's background.
	r0, g0, b0, _ := img.At(0, 0).RGBA()
	drawn := 0
	for y := 0; y < img.Bounds().Dy(); y += 4 {
		for x := 0; x < img.Bounds().Dx(); x += 4 {
			if r, g, b, _ := img.At(x, y).RGBA(); r != r0 || g != g0 || b != b0 {
				drawn++
			}
		}
	}
	assert.Greater(t, drawn, 500, "pixels that differ from the background")
}
