package load

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/internal/testenv"
	"github.com/pyexec/pyexec/wire"
)

// dataCases are requests of the two scenarios that pass data in or get a
// figure out, both parities of args' alternation among them.
func dataCases(t *testing.T) map[string]Case {
	t.Helper()
	out := map[string]Case{}
	for _, name := range []string{"args", "plot"} {
		sc, ok := Lookup(name)
		require.True(t, ok, name)
		for _, i := range []int{0, 1, 2, 41, 150} {
			out[fmt.Sprintf("%s/%d", name, i)] = sc.Next(i)
		}
	}
	return out
}

// TestDataScenarios_SendWellFormedBodies checks the JSON body each request
// becomes: args travels as an object, and only in the args scenario.
func TestDataScenarios_SendWellFormedBodies(t *testing.T) {
	for name, cs := range dataCases(t) {
		data, err := json.Marshal(wire.NewRequest(cs.Request))
		require.NoError(t, err)
		var body map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(data, &body), name)
		var script string
		require.NoError(t, json.Unmarshal(body["script"], &script), name)
		assert.Contains(t, script, "def main(", name)
		assert.NotContains(t, body, "files", name)
		if cs.Request.Args == nil {
			assert.NotContains(t, body, "args", name)
			continue
		}
		var args map[string]any
		require.NoError(t, json.Unmarshal(body["args"], &args), "%s: args is an object", name)
		assert.IsType(t, "", args["city"], name)
	}
	sc, _ := Lookup("args")
	var even, odd map[string]any
	require.NoError(t, json.Unmarshal(sc.Next(4).Request.Args, &even))
	require.NoError(t, json.Unmarshal(sc.Next(5).Request.Args, &odd))
	assert.Equal(t, map[string]any{"city": "Oslo 4"}, even, "days left to main's default")
	assert.Equal(t, map[string]any{"city": "Oslo 5", "days": 5.0}, odd)
	plot, _ := Lookup("plot")
	assert.Nil(t, plot.Next(0).Request.Args)
}

// runOutsideJail runs each script in a plain interpreter, calling main
// with the request's args, and returns what the service would answer: the
// result and the figures left open, drawn as PNG.
const runOutsideJail = `import base64, io, json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
out = []
for case in json.load(sys.stdin):
    ns = {}
    exec(compile(case["script"], "<script>", "exec"), ns)
    result = ns["main"](**(case["args"] or {}))
    figs = []
    for n in plt.get_fignums():
        buf = io.BytesIO()
        plt.figure(n).savefig(buf, format="png")
        figs.append(base64.b64encode(buf.getvalue()).decode())
    plt.close("all")
    out.append({"result": result, "figures": figs})
json.dump(out, sys.stdout)
`

// TestDataScenarios_ScriptsEarnTheirCheck runs each scenario's script in a
// plain interpreter (no jail) and feeds what it returns and draws to the
// scenario's check, which must accept it: the script and the expected
// answer agree.
func TestDataScenarios_ScriptsEarnTheirCheck(t *testing.T) {
	py := testenv.Interpreter(t)
	cases := dataCases(t)
	type in struct {
		Script string          `json:"script"`
		Args   json.RawMessage `json:"args"`
	}
	var names []string
	var ins []in
	for name, cs := range cases {
		names = append(names, name)
		args := cs.Request.Args
		if args == nil {
			args = json.RawMessage("null")
		}
		ins = append(ins, in{cs.Request.Script, args})
	}
	stdin, err := json.Marshal(ins)
	require.NoError(t, err)
	cmd := exec.Command(py, "-c", runOutsideJail)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "MPLCONFIGDIR="+t.TempDir())
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	require.NoError(t, err, stderr.String())
	var outs []struct {
		Result  json.RawMessage `json:"result"`
		Figures []string        `json:"figures"`
	}
	require.NoError(t, json.Unmarshal(stdout, &outs))
	require.Len(t, outs, len(names))
	for k, name := range names {
		r := &pyexec.Response{Result: outs[k].Result}
		for _, b64 := range outs[k].Figures {
			data, err := base64.StdEncoding.DecodeString(b64)
			require.NoError(t, err)
			cfg, err := png.DecodeConfig(bytes.NewReader(data))
			require.NoError(t, err, name)
			r.Figures = append(r.Figures, pyexec.Figure{PNG: data, Width: cfg.Width, Height: cfg.Height})
		}
		assert.NoError(t, cases[name].Check(200, r), name)
	}
}

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))))
	return buf.Bytes()
}

// TestDataScenarios_ChecksCatchWrongAnswers gives each check the right
// answer, then answers that differ from it in one way each.
func TestDataScenarios_ChecksCatchWrongAnswers(t *testing.T) {
	ok := func(result string) *pyexec.Response { return &pyexec.Response{Result: json.RawMessage(result)} }
	args, _ := Lookup("args")
	t.Run("args", func(t *testing.T) {
		even, odd := args.Next(2).Check, args.Next(3).Check
		require.NoError(t, even(200, ok(`{"city": "Oslo 2", "days": 7}`)))
		require.NoError(t, odd(200, ok(`{"days": 3, "city": "Oslo 3"}`)))
		assert.Error(t, even(200, ok(`{"city": "Oslo 2", "days": 2}`)), "the default not used")
		assert.Error(t, odd(200, ok(`{"city": "Oslo 3", "days": 7}`)), "days ignored")
		assert.Error(t, even(200, ok(`{"city": "Oslo 4", "days": 7}`)), "another request's answer")
		assert.Error(t, even(200, ok(`{"city": "Oslo 2"}`)))
		assert.Error(t, even(400, &pyexec.Response{Error: &pyexec.Error{Code: pyexec.CodeValidation, Message: "main() is missing city"}}))
		assert.Error(t, even(500, ok(`{"city": "Oslo 2", "days": 7}`)), "status")
	})

	plot, _ := Lookup("plot")
	check := plot.Next(7).Check
	good := func() *pyexec.Response {
		return &pyexec.Response{Result: json.RawMessage("15"),
			Figures: []pyexec.Figure{{PNG: pngOf(t, plotWidth, plotHeight), Width: plotWidth, Height: plotHeight}}}
	}
	require.NoError(t, check(200, good()))
	for name, spoil := range map[string]func(r *pyexec.Response){
		"another request's total": func(r *pyexec.Response) { r.Result = json.RawMessage("16") },
		"an error": func(r *pyexec.Response) {
			r.Result, r.Error = nil, &pyexec.Error{Code: pyexec.CodeRuntime, Message: "boom"}
		},
		"no figure":   func(r *pyexec.Response) { r.Figures = nil },
		"two figures": func(r *pyexec.Response) { r.Figures = append(r.Figures, r.Figures[0]) },
		"figure omitted": func(r *pyexec.Response) {
			r.Figures[0].PNG, r.Figures[0].Omitted = nil, "over the output budget"
		},
		"size said wrong":     func(r *pyexec.Response) { r.Figures[0].Width = 640 },
		"PNG of another size": func(r *pyexec.Response) { r.Figures[0].PNG = pngOf(t, plotHeight, plotWidth) },
		"not a PNG":           func(r *pyexec.Response) { r.Figures[0].PNG = []byte("GIF89a") },
		"PNG cut short":       func(r *pyexec.Response) { r.Figures[0].PNG = r.Figures[0].PNG[:20] },
	} {
		r := good()
		spoil(r)
		assert.Error(t, check(200, r), "plot: %s", name)
	}
}
