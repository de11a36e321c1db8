package jail

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/png"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
)

func pngOf(t *testing.T, w, h int) string {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))))
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func TestCheckFigures_SizeComesFromThePNG(t *testing.T) {
	got := checkFigures([]replyFigure{{PNG: pngOf(t, 30, 20), Width: 1, Height: 1}}, 1<<20)
	require.Len(t, got, 1)
	assert.Equal(t, 30, got[0].Width)
	assert.Equal(t, 20, got[0].Height)
	assert.Empty(t, got[0].Omitted)
	cfg, err := png.DecodeConfig(bytes.NewReader(got[0].PNG))
	require.NoError(t, err)
	assert.Equal(t, 30, cfg.Width)
}

func TestCheckFigures_RefusesWhatIsNotAnAllowedPNG(t *testing.T) {
	big := pngOf(t, 5000, 5000) // over MaxFigurePixels, whatever the reply claims
	got := checkFigures([]replyFigure{
		{PNG: "not base64!"},
		{PNG: base64.StdEncoding.EncodeToString([]byte("GIF89a"))},
		{PNG: big, Width: 10, Height: 10},
		{Width: 20000, Height: 20000, Omitted: "too big \xff" + strings.Repeat("x", 500)},
		{Width: -3, Height: 4},
	}, 1<<20)
	require.Len(t, got, 5)
	assert.Equal(t, pyexec.Figure{Omitted: "not a PNG"}, got[0])
	assert.Equal(t, pyexec.Figure{Omitted: "not a PNG"}, got[1])
	assert.Equal(t, pyexec.Figure{Width: 5000, Height: 5000, Omitted: "5000 x 5000 pixels is over the 16777216-pixel limit"}, got[2])
	assert.Equal(t, 20000, got[3].Width)
	assert.LessOrEqual(t, len(got[3].Omitted), maxOmittedText+3)
	assert.True(t, strings.HasPrefix(got[3].Omitted, "too big \uFFFD"))
	assert.Equal(t, pyexec.Figure{Height: 4, Omitted: "not drawn"}, got[4])
}

func TestCheckFigures_CountAndByteCaps(t *testing.T) {
	one := pngOf(t, 2, 2)
	var in []replyFigure
	for range MaxFigures + 5 {
		in = append(in, replyFigure{PNG: one})
	}
	got := checkFigures(in, 3*len(one))
	require.Len(t, got, MaxFigures+1, "past the cap only one entry says how many more")
	for i := range 3 {
		assert.NotNil(t, got[i].PNG, i)
	}
	assert.Nil(t, got[3].PNG)
	assert.Contains(t, got[3].Omitted, "bytes left for figures")
	assert.Equal(t, pyexec.Figure{Omitted: "more figures over the limit of 10"}, got[MaxFigures])
	assert.Nil(t, checkFigures(nil, 100))
}
