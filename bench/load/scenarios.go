package load

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/pyexec/pyexec"
)

// Case is one request of a scenario and the check of its answer.
type Case struct {
	// Kind groups cases in reports ("normal", "validation", "abuse"...).
	Kind    string
	Request pyexec.Request
	// Check returns an error when the answer is not what this request must
	// get: its HTTP status and outcome (a refusal such as overloaded comes
	// as an outcome whose Error is the refusal). A wrong result counts as
	// a failure, never as a success.
	Check func(status int, r *pyexec.Response) error
}

// outcomeOf is the answer's error type, or "ok".
func outcomeOf(r *pyexec.Response) string {
	if r.Error == nil {
		return "ok"
	}
	return string(r.Error.Code)
}

// Scenario produces the i-th request of a run.
type Scenario struct {
	Name        string
	Description string
	Next        func(i int) Case
}

// request asks for script with a timeout in seconds (0: the service's default).
func request(script string, timeout float64) pyexec.Request {
	return pyexec.Request{Script: script, Timeout: time.Duration(timeout * float64(time.Second))}
}

// expect checks status, error type and (when want is not empty) the result.
func expect(status int, errType, want string) func(int, *pyexec.Response) error {
	return func(got int, a *pyexec.Response) error {
		if got != status {
			return fmt.Errorf("status %d, want %d (%s)", got, status, outcomeOf(a))
		}
		if outcomeOf(a) != errType {
			msg := ""
			if a.Error != nil {
				msg = ": " + a.Error.Message
			}
			return fmt.Errorf("outcome %s%s, want %s", outcomeOf(a), msg, errType)
		}
		if want != "" && !jsonEqual(a.Result, want) {
			return fmt.Errorf("result %s, want %s", a.Result, want)
		}
		return nil
	}
}

// expectOneOf accepts any of the listed outcomes with status 200.
func expectOneOf(types ...string) func(int, *pyexec.Response) error {
	return func(got int, a *pyexec.Response) error {
		for _, t := range types {
			if outcomeOf(a) == t && got == 200 {
				return nil
			}
		}
		return fmt.Errorf("status %d outcome %s, want one of %s", got, outcomeOf(a), strings.Join(types, ", "))
	}
}

func jsonEqual(raw json.RawMessage, want string) bool {
	var a, b any
	if json.Unmarshal(raw, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

const helloScript = "def main():\n    print(\"hello from sandbox\")\n    return {\"message\": \"success\"}"

func hello(int) Case {
	check := expect(200, "ok", `{"message": "success"}`)
	return Case{Kind: "normal", Request: request(helloScript, 0), Check: func(s int, a *pyexec.Response) error {
		if err := check(s, a); err != nil {
			return err
		}
		if a.Stdout != "hello from sandbox\n" {
			return fmt.Errorf("stdout %q", a.Stdout)
		}
		return nil
	}}
}

// pandasCase builds a small DataFrame, groups and sums. The offset makes
// every answer distinct, so a mixed-up answer is caught.
func pandasCase(i int) Case {
	script := fmt.Sprintf(`import pandas as pd
def main():
    df = pd.DataFrame({"k": [i %% 3 for i in range(30)], "v": [i + %d for i in range(30)]})
    return {str(k): int(v) for k, v in df.groupby("k")["v"].sum().items()}
`, i)
	want := fmt.Sprintf(`{"0": %d, "1": %d, "2": %d}`, 135+10*i, 145+10*i, 155+10*i)
	return Case{Kind: "normal", Request: request(script, 0), Check: expect(200, "ok", want)}
}

// argsScript is the README's args example.
const argsScript = "def main(city, days=7):\n    return {\"city\": city, \"days\": days}"

// argsCase calls the README's args example: every other request passes
// only city, so main's default is used, and the others pass days too,
// distinct per request, so a mixed-up answer is caught.
func argsCase(i int) Case {
	city := fmt.Sprintf("Oslo %d", i)
	args := fmt.Sprintf(`{"city": %q}`, city)
	want := fmt.Sprintf(`{"city": %q, "days": 7}`, city)
	if i%2 == 1 {
		args = fmt.Sprintf(`{"city": %q, "days": %d}`, city, i)
		want = fmt.Sprintf(`{"city": %q, "days": %d}`, city, i)
	}
	req := request(argsScript, 0)
	req.Args = json.RawMessage(args)
	return Case{Kind: "normal", Request: req, Check: expect(200, "ok", want)}
}

// The plot scenario's figure, in pixels: figsize (3, 2) at 50 dpi.
const plotWidth, plotHeight = 150, 100

// plotCase draws a small bar chart and leaves it open, so it comes back
// as a PNG; the bars' total, returned too, differs per request.
func plotCase(i int) Case {
	script := fmt.Sprintf(`import matplotlib.pyplot as plt
def main():
    values = [3, 5, %d]
    fig, ax = plt.subplots(figsize=(3, 2), dpi=50)
    ax.bar(["Oslo", "Bergen", "Tromsø"], values)
    ax.set_title("sales")
    return sum(values)
`, i%100)
	check := expect(200, "ok", fmt.Sprint(8+i%100))
	return Case{Kind: "normal", Request: request(script, 0), Check: func(s int, a *pyexec.Response) error {
		if err := check(s, a); err != nil {
			return err
		}
		return checkFigure(a.Figures, plotWidth, plotHeight)
	}}
}

// checkFigure wants exactly one figure, drawn, whose PNG decodes at the
// given size.
func checkFigure(figs []pyexec.Figure, width, height int) error {
	if len(figs) != 1 {
		return fmt.Errorf("%d figures, want 1", len(figs))
	}
	f := figs[0]
	if f.Omitted != "" {
		return fmt.Errorf("figure omitted: %s", f.Omitted)
	}
	if f.Width != width || f.Height != height {
		return fmt.Errorf("figure said to be %d x %d, want %d x %d", f.Width, f.Height, width, height)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(f.PNG))
	if err != nil {
		return fmt.Errorf("figure: %w", err)
	}
	if cfg.Width != width || cfg.Height != height {
		return fmt.Errorf("figure's PNG is %d x %d, want %d x %d", cfg.Width, cfg.Height, width, height)
	}
	return nil
}

// cpuIterations is about 50 ms of pure-Python work on the reference machine.
const cpuIterations = 1_200_000

func cpuCase(i int) Case {
	n := cpuIterations + i%10
	script := fmt.Sprintf("def main():\n    total = 0\n    for i in range(%d):\n        total += i * i %% 7\n    return total\n", n)
	var total int64
	for k := int64(0); k < int64(n); k++ {
		total += k * k % 7
	}
	return Case{Kind: "normal", Request: request(script, 0), Check: expect(200, "ok", fmt.Sprint(total))}
}

func echoCase(i int) Case {
	script := fmt.Sprintf("def main():\n    print(%d)\n    return {\"i\": %d}\n", i, i)
	return Case{Kind: "normal", Request: request(script, 0), Check: expect(200, "ok", fmt.Sprintf(`{"i": %d}`, i))}
}

// mixedCase: mostly normal scripts, some validation errors, runtime errors
// and timeouts (out of every 20: 16 normal, 2 validation, 1 runtime, 1 timeout).
func mixedCase(i int) Case {
	switch i % 20 {
	case 3, 13:
		return Case{Kind: "validation", Request: request("def helper():\n    return 1\n", 0),
			Check: expect(400, "validation_error", "")}
	case 7:
		return Case{Kind: "runtime", Request: request("def main():\n    raise ValueError('boom')\n", 0),
			Check: expect(200, "runtime_error", "")}
	case 17:
		return Case{Kind: "timeout", Request: request("import time\ndef main():\n    time.sleep(5)\n", 0.5),
			Check: expect(200, "timeout", "")}
	default:
		return echoCase(i)
	}
}

// abuseCase: 70% normal traffic, 30% memory, fork and output bombs.
func abuseCase(i int) Case {
	switch i % 10 {
	case 2:
		return Case{Kind: "memory bomb", Request: request("def main():\n    b = bytearray(8 * 1024**3)\n    return len(b)\n", 5),
			Check: expect(200, "memory_limit", "")}
	case 5:
		return Case{Kind: "fork bomb", Request: request("import os\ndef main():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass\n", 1),
			Check: expectOneOf("timeout", "sandbox_error", "runtime_error")}
	case 8:
		return Case{Kind: "output bomb", Request: request("import sys\ndef main():\n    for _ in range(10):\n        sys.stdout.write('x' * (1 << 20))\n    return 1\n", 5),
			// Strict isolation cuts the output and answers; fork isolation
			// stops the script once its output passes the cap. Either
			// way the output is flagged as cut.
			Check: func(s int, a *pyexec.Response) error {
				if err := expect(200, "ok", "1")(s, a); err != nil {
					if err2 := expect(200, "output_limit", "")(s, a); err2 != nil {
						return err
					}
				}
				if !a.StdoutTruncated {
					return fmt.Errorf("10 MiB of output not flagged as truncated")
				}
				return nil
			}}
	default:
		return echoCase(i)
	}
}

// scenarios is the built-in set, by name.
func scenarios() map[string]Scenario {
	return map[string]Scenario{
		"hello":  {Name: "hello", Description: "the README example: print a line, return a dict", Next: hello},
		"args":   {Name: "args", Description: "the README's args example: `main(city, days=7)` called with `args`, `days` left to its default every other request", Next: argsCase},
		"pandas": {Name: "pandas", Description: "build a 30-row DataFrame, group and sum, return a dict", Next: pandasCase},
		"plot":   {Name: "plot", Description: "import matplotlib's pyplot, draw a 150 × 100 bar chart and leave it open: it comes back as a PNG", Next: plotCase},
		"cpu":    {Name: "cpu", Description: "about 50 ms of pure-Python arithmetic", Next: cpuCase},
		"mixed":  {Name: "mixed", Description: "80% normal, 10% validation errors, 5% runtime errors, 5% timeouts (0.5 s)", Next: mixedCase},
		"abuse":  {Name: "abuse", Description: "70% normal, 10% each of 8 GiB allocations, fork bombs (1 s) and 10 MiB of output", Next: abuseCase},
	}
}

// Lookup returns a built-in scenario.
func Lookup(name string) (Scenario, bool) {
	s, ok := scenarios()[name]
	return s, ok
}

// Names lists the built-in scenarios.
func Names() []string {
	var names []string
	for n := range scenarios() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// FromFile makes a scenario of one script file; an answer is right when it
// has no error.
func FromFile(path string, timeout float64) (Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Scenario{}, fmt.Errorf("read script: %w", err)
	}
	req := request(string(data), timeout)
	return Scenario{Name: path, Description: "script file " + path, Next: func(int) Case {
		return Case{Kind: "normal", Request: req, Check: expect(200, "ok", "")}
	}}, nil
}
