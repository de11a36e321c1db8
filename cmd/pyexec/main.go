// Command pyexec is the client of a pyexec service.
//
//	pyexec run script.py [--url URL] [--timeout S] [--args JSON]
//	cat script.py | pyexec run -
//	pyexec mcp [--url URL]
//
// It prints the script's stdout, then the result as JSON on a line of its
// own; the script's stderr goes to stderr, with a note when the service
// truncated stdout or stderr. Exit status: 0 when the script succeeded, 1
// when the script failed (its error is printed on stderr), 2 on a usage,
// connection or service error; --help exits 0. The service's address is
// --url, else PYEXEC_URL, else http://127.0.0.1:8080; the API key is read
// from PYEXEC_API_KEY. "pyexec mcp" serves the run_python tool to an MCP
// client over stdin and stdout (mcp.go).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	neturl "net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/client"
)

// Exit statuses.
const (
	exitOK          = 0
	exitScriptError = 1
	exitUsage       = 2
)

// defaultURL is where a service started with its defaults listens.
const defaultURL = "http://127.0.0.1:8080"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: pyexec run SCRIPT|- [--url URL] [--timeout SECONDS] [--args JSON] [--file LOCAL[:PATH]]... [--out DIR]")
	fmt.Fprintln(w, "       pyexec mcp [--url URL]   (an MCP server on stdin/stdout with the run_python tool)")
	fmt.Fprintln(w, "  --url      the service (default $PYEXEC_URL, else "+defaultURL+")")
	fmt.Fprintln(w, "  --timeout  the script's time limit in seconds, more than 0 (default: the service's)")
	fmt.Fprintln(w, `  --args     a JSON object whose members main is called with as keyword arguments ('{"city": "Oslo"}')`)
	fmt.Fprintln(w, "  --file     an input file for the script's working directory, at PATH (default: LOCAL's base name); repeatable")
	fmt.Fprintln(w, "  --out      write the files the script left in output/ under DIR (made if missing)")
	fmt.Fprintln(w, "  the API key, if the service needs one, is read from PYEXEC_API_KEY")
}

// run is main without the process: arguments, streams and environment are
// passed in so tests can drive it.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	switch {
	case len(args) == 0:
		usage(stderr)
		return exitUsage
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		usage(stdout)
		return exitOK
	case args[0] == "run":
		return runScript(args[1:], stdin, stdout, stderr, getenv)
	case args[0] == "mcp":
		return runMCP(args[1:], stdin, stdout, stderr, getenv)
	default:
		fmt.Fprintf(stderr, "pyexec: unknown command %q\n", args[0])
		usage(stderr)
		return exitUsage
	}
}

// serviceURL is the service's address when --url is not given.
func serviceURL(getenv func(string) string) string {
	if u := getenv("PYEXEC_URL"); u != "" {
		return u
	}
	return defaultURL
}

// runScript is "pyexec run".
func runScript(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("pyexec run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // usage is printed below, on stdout for --help
	url := fs.String("url", serviceURL(getenv), "")
	var timeout timeoutFlag
	fs.Var(&timeout, "timeout", "")
	var mainArgs argsFlag
	fs.Var(&mainArgs, "args", "")
	var files filesFlag
	fs.Var(&files, "file", "")
	out := fs.String("out", "", "")
	// Accept flags before or after the script name.
	var positional []string
	rest := args
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				usage(stdout)
				return exitOK
			}
			usage(stderr)
			return exitUsage
		}
		rest = fs.Args()
		if len(rest) > 0 {
			positional = append(positional, rest[0])
			rest = rest[1:]
		}
	}
	if len(positional) != 1 {
		usage(stderr)
		return exitUsage
	}
	script, err := readScript(positional[0], stdin)
	if err != nil {
		fmt.Fprintln(stderr, "pyexec:", err)
		return exitUsage
	}
	req := pyexec.Request{Script: script, Timeout: time.Duration(timeout), Args: json.RawMessage(mainArgs)}
	if req.Files, err = files.read(); err != nil {
		fmt.Fprintln(stderr, "pyexec:", err)
		return exitUsage
	}
	c := &client.Client{BaseURL: *url, APIKey: getenv("PYEXEC_API_KEY"), HTTP: &http.Client{Timeout: 5 * time.Minute}}
	ans, err := c.Execute(context.Background(), req)
	if err != nil {
		return failed(stderr, err)
	}
	fmt.Fprint(stdout, ans.Stdout)
	fmt.Fprint(stderr, ans.Stderr)
	var notes []string
	if ans.StdoutTruncated {
		notes = append(notes, "pyexec: the service truncated the script's stdout (it keeps at most its output limit)")
	}
	if ans.StderrTruncated {
		notes = append(notes, "pyexec: the service truncated the script's stderr (it keeps at most its output limit)")
	}
	if n := len(ans.Figures); n > 0 && *out == "" {
		notes = append(notes, figuresNote(ans.Figures))
	}
	if len(notes) > 0 || ans.Error != nil || len(ans.Files) > 0 || len(ans.FilesLeftOut) > 0 {
		endLine(stderr, ans.Stderr) // what follows is ours, on lines of its own
	}
	for _, n := range notes {
		fmt.Fprintln(stderr, n)
	}
	if !reportFiles(stderr, ans.Response, *out) || !saveFigures(stderr, ans.Figures, *out) {
		return exitUsage
	}
	if ans.Error != nil {
		printError(stderr, ans.Error)
		return exitScriptError
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, ans.Result, "", "  "); err != nil {
		pretty.Reset()
		pretty.Write(ans.Result)
	}
	endLine(stdout, ans.Stdout)
	fmt.Fprintln(stdout, pretty.String())
	return exitOK
}

// endLine ends the line that printing s left open, if it did.
func endLine(w io.Writer, s string) {
	if s != "" && !strings.HasSuffix(s, "\n") {
		fmt.Fprintln(w)
	}
}

// timeoutFlag is --timeout: seconds, more than 0. Left out (zero), the
// service applies its default; the service refuses one over its maximum.
type timeoutFlag time.Duration

func (t *timeoutFlag) String() string { return time.Duration(*t).String() }

func (t *timeoutFlag) Set(s string) error {
	secs, err := strconv.ParseFloat(s, 64)
	// The largest time.Duration is about 292 years; a value that rounds to
	// 0 ns would silently become the service's default.
	if err != nil || !(secs > 0) || secs > math.MaxInt64/float64(time.Second) || time.Duration(secs*float64(time.Second)) <= 0 {
		return errors.New("must be a number of seconds, more than 0 (leave it out for the service's default)")
	}
	*t = timeoutFlag(secs * float64(time.Second))
	return nil
}

// argsFlag is --args: the JSON text of an object, sent as the request's
// args. Anything else is refused here rather than by the service, as a
// mistake on the command line.
type argsFlag json.RawMessage

func (a *argsFlag) String() string { return string(*a) }

func (a *argsFlag) Set(s string) error {
	var members map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &members); err != nil || members == nil {
		return errors.New(`must be a JSON object, such as '{"city": "Oslo"}'`)
	}
	*a = argsFlag(s)
	return nil
}

// failed reports an answer that is not the script's outcome, or no answer.
func failed(stderr io.Writer, err error) int {
	var pe *pyexec.Error
	var se *client.StatusError
	var ue *neturl.Error
	switch {
	case errors.Is(err, client.ErrNotEnvelope) && errors.As(err, &se):
		fmt.Fprintf(stderr, "pyexec: the service answered %d with something that is not JSON\n", se.Status)
	case errors.As(err, &pe):
		printError(stderr, pe)
	case errors.As(err, &ue) && ue.Op != "parse":
		fmt.Fprintln(stderr, "pyexec: cannot reach the service:", err)
	default:
		fmt.Fprintln(stderr, "pyexec:", err)
	}
	return exitUsage
}

func printError(stderr io.Writer, e *pyexec.Error) {
	if e.Traceback != "" {
		fmt.Fprint(stderr, e.Traceback)
	}
	fmt.Fprintf(stderr, "pyexec: %s: %s\n", e.Code, e.Message)
}

func readScript(name string, stdin io.Reader) (string, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return "", fmt.Errorf("read script: %w", err)
	}
	if len(data) == 0 {
		return "", errors.New("read script: it is empty")
	}
	return string(data), nil
}

// filesFlag is --file LOCAL[:PATH], repeatable: LOCAL is read and sent as
// the input file PATH, by default LOCAL's base name. The last ':' splits
// them, so a local name holding one needs an explicit PATH.
type filesFlag []string

func (f *filesFlag) String() string { return strings.Join(*f, ",") }

func (f *filesFlag) Set(s string) error {
	local, path := fileSpec(s)
	if local == "" {
		return errors.New("must be LOCAL or LOCAL:PATH")
	}
	if err := pyexec.CheckFilePath(path); err != nil {
		return err
	}
	*f = append(*f, s)
	return nil
}

func fileSpec(s string) (local, path string) {
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, filepath.Base(s)
}

// read returns the files' contents, as the request carries them.
func (f filesFlag) read() ([]pyexec.File, error) {
	var out []pyexec.File
	for _, s := range f {
		local, path := fileSpec(s)
		data, err := os.ReadFile(local)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		out = append(out, pyexec.File{Path: path, Content: data})
	}
	return out, nil
}

// reportFiles tells on stderr which output files came back and which were
// left out, and writes them under dir when it is set. A path that is not a
// plain relative one (the service refuses those) or a link in dir leading
// out of it cannot make a file land outside dir: os.Root refuses both.
// It reports false when a file could not be written.
func reportFiles(stderr io.Writer, resp *pyexec.Response, dir string) bool {
	for _, f := range resp.FilesLeftOut {
		fmt.Fprintf(stderr, "pyexec: output file %s left out: %s\n", f.Path, f.Reason)
	}
	if resp.FilesTruncated {
		fmt.Fprintln(stderr, "pyexec: output/ held more files than the service looked at")
	}
	if len(resp.Files) == 0 {
		return true
	}
	if dir == "" {
		fmt.Fprintf(stderr, "pyexec: the script left %d files in output/ (--out DIR writes them)\n", len(resp.Files))
		return true
	}
	if err := writeFiles(dir, resp.Files); err != nil {
		fmt.Fprintln(stderr, "pyexec: --out:", err)
		return false
	}
	fmt.Fprintf(stderr, "pyexec: wrote %d files to %s\n", len(resp.Files), dir)
	return true
}

func writeFiles(dir string, files []pyexec.OutputFile) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, f := range files {
		if err := pyexec.CheckFilePath(f.Path); err != nil {
			return err
		}
		if d := path.Dir(f.Path); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		if err := root.WriteFile(f.Path, f.Content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// saveFigures writes the drawn figures under dir, when it is set, as
// figure-1.png, figure-2.png... (numbered in the answer's order), through
// os.Root like the output files, and says so; the ones not drawn are named
// with the reason. It reports false when one could not be written.
func saveFigures(stderr io.Writer, figs []pyexec.Figure, dir string) bool {
	if dir == "" || len(figs) == 0 {
		return true
	}
	var files []pyexec.OutputFile
	for i, f := range figs {
		if f.Omitted != "" {
			fmt.Fprintf(stderr, "pyexec: figure %d not drawn: %s\n", i+1, f.Omitted)
			continue
		}
		files = append(files, pyexec.OutputFile{Path: fmt.Sprintf("figure-%d.png", i+1), Content: f.PNG})
	}
	if err := writeFiles(dir, files); err != nil {
		fmt.Fprintln(stderr, "pyexec: --out:", err)
		return false
	}
	fmt.Fprintf(stderr, "pyexec: wrote %d figures to %s\n", len(files), dir)
	return true
}

// figuresNote says how many figures came back, and which were not drawn.
func figuresNote(figs []pyexec.Figure) string {
	drawn, omitted := 0, 0
	for _, f := range figs {
		if f.Omitted != "" {
			omitted++
		} else {
			drawn++
		}
	}
	note := fmt.Sprintf("pyexec: %d figure(s) came back as PNG (--out DIR saves them)", drawn)
	if omitted > 0 {
		note += fmt.Sprintf("; %d more not drawn (over a limit)", omitted)
	}
	return note
}
