package jail

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image/png"
	"unicode/utf8"

	"github.com/pyexec/pyexec"
)

// Limits on the matplotlib figures a script leaves open when main returns,
// sent to the harness with each request and enforced again here.
const (
	// MaxFigures is how many figures come back; if there are more, one
	// last entry says how many were left out, undrawn.
	MaxFigures = 10
	// MaxFigurePixels is the largest figure drawn (4096 x 4096 pixels). The
	// harness checks figsize x dpi before drawing, so a huge figure costs
	// neither memory nor time.
	MaxFigurePixels = 4096 * 4096
	// maxOmittedText bounds the reason given for an omitted figure.
	maxOmittedText = 200
)

// checkFigures turns the figures of a reply into the response's. A reply
// may be forged by the script, so each PNG is decoded far enough to read
// its size, which is taken from the image rather than from the reply; one
// that is not a PNG, or is larger than the limits, is listed as omitted.
// Once the PNGs' base64 passes budget bytes the rest are omitted too, and
// past MaxFigures only the entry saying how many more there were is kept.
func checkFigures(in []replyFigure, budget int) []pyexec.Figure {
	if len(in) == 0 {
		return nil
	}
	if len(in) > MaxFigures+1 {
		in = in[:MaxFigures+1]
	}
	out := make([]pyexec.Figure, 0, len(in))
	for i, f := range in {
		fig := pyexec.Figure{Width: max(f.Width, 0), Height: max(f.Height, 0)}
		switch {
		case i >= MaxFigures:
			fig = pyexec.Figure{Omitted: cutText(f.Omitted, maxOmittedText)}
			if fig.Omitted == "" {
				fig.Omitted = fmt.Sprintf("more figures over the limit of %d", MaxFigures)
			}
		case f.PNG == "":
			fig.Omitted = cutText(f.Omitted, maxOmittedText)
			if fig.Omitted == "" {
				fig.Omitted = "not drawn"
			}
		case len(f.PNG) > budget:
			fig.Omitted = fmt.Sprintf("the PNG is over the %d bytes left for figures", budget)
		default:
			budget -= len(f.PNG)
			data, err := base64.StdEncoding.DecodeString(f.PNG)
			if err != nil {
				fig.Omitted = "not a PNG"
				break
			}
			cfg, err := png.DecodeConfig(bytes.NewReader(data))
			if err != nil {
				fig.Omitted = "not a PNG"
				break
			}
			fig.Width, fig.Height = cfg.Width, cfg.Height
			if int64(cfg.Width)*int64(cfg.Height) > MaxFigurePixels {
				fig.Omitted = fmt.Sprintf("%d x %d pixels is over the %d-pixel limit", cfg.Width, cfg.Height, MaxFigurePixels)
				break
			}
			fig.PNG = data
		}
		out = append(out, fig)
	}
	return out
}

// cutText cuts s to at most max bytes at a character boundary, and makes
// it valid UTF-8.
func cutText(s string, max int) string {
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return string([]rune(s))
}
