// Command pyexec is the client of a pyexec service.
//
//	pyexec run script.py [--url URL] [--timeout S]
//	cat script.py | pyexec run -
//	pyexec mcp [--url URL]
//
// It prints the script's stdout, then its stderr on stderr, then the result
// as JSON. Exit status: 0 when the script succeeded, 1 when the script
// failed (its error is printed on stderr), 2 on a usage, connection or
// service error. The API key is read from PYEXEC_API_KEY. "pyexec mcp" serves
// the run_python tool to an MCP client over stdin and stdout (mcp.go).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
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

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: pyexec run SCRIPT|- [--url URL] [--timeout SECONDS]")
	fmt.Fprintln(w, "       pyexec mcp [--url URL]   (an MCP server on stdin/stdout with the run_python tool)")
	fmt.Fprintln(w, "  the API key, if the service needs one, is read from PYEXEC_API_KEY")
}

// run is main without the process: arguments, streams and environment are
// passed in so tests can drive it.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) > 0 && args[0] == "mcp" {
		return runMCP(args[1:], stdin, stdout, stderr, getenv)
	}
	if len(args) == 0 || args[0] != "run" {
		usage(stderr)
		return exitUsage
	}
	fs := flag.NewFlagSet("pyexec run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defURL := getenv("PYEXEC_URL")
	if defURL == "" {
		defURL = "http://127.0.0.1:8080"
	}
	url := fs.String("url", defURL, "service base URL (default $PYEXEC_URL or http://127.0.0.1:8080)")
	timeout := fs.Float64("timeout", 0, "script timeout in seconds (0: the service default)")
	// Accept flags before or after the script name.
	var positional []string
	rest := args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
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
	req := pyexec.Request{Script: script}
	if *timeout > 0 {
		req.Timeout = time.Duration(*timeout * float64(time.Second))
	}
	c := &client.Client{BaseURL: *url, APIKey: getenv("PYEXEC_API_KEY"), HTTP: &http.Client{Timeout: 5 * time.Minute}}
	ans, err := c.Execute(context.Background(), req)
	if err != nil {
		return failed(stderr, err)
	}
	fmt.Fprint(stdout, ans.Stdout)
	fmt.Fprint(stderr, ans.Stderr)
	if ans.Error != nil {
		printError(stderr, ans.Error)
		return exitScriptError
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, ans.Result, "", "  "); err != nil {
		pretty.Reset()
		pretty.Write(ans.Result)
	}
	fmt.Fprintln(stdout, pretty.String())
	return exitOK
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
