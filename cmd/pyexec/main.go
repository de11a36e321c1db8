// Command pyexec is the client of a pyexec service.
//
//	pyexec run script.py [--url URL] [--timeout S]
//	cat script.py | pyexec run -
//
// It prints the script's stdout, then its stderr on stderr, then the result
// as JSON. Exit status: 0 when the script succeeded, 1 when the script
// failed (its error is printed on stderr), 2 on a usage, connection or
// service error. The API key is read from PYEXEC_API_KEY.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
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
	fmt.Fprintln(w, "  the API key, if the service needs one, is read from PYEXEC_API_KEY")
}

// run is main without the process: arguments, streams and environment are
// passed in so tests can drive it.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
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
	body := map[string]any{"script": script}
	if *timeout > 0 {
		body["timeout"] = *timeout
	}
	data, _ := json.Marshal(body)
	httpTimeout := 5 * time.Minute
	req, err := http.NewRequest(http.MethodPost, strings.TrimRight(*url, "/")+"/execute", bytes.NewReader(data))
	if err != nil {
		fmt.Fprintln(stderr, "pyexec:", err)
		return exitUsage
	}
	req.Header.Set("Content-Type", "application/json")
	if key := getenv("PYEXEC_API_KEY"); key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := (&http.Client{Timeout: httpTimeout}).Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "pyexec: cannot reach the service:", err)
		return exitUsage
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 256<<20))
	if err != nil {
		fmt.Fprintln(stderr, "pyexec: reading the answer:", err)
		return exitUsage
	}
	var ans struct {
		Result json.RawMessage `json:"result"`
		Stdout string          `json:"stdout"`
		Stderr string          `json:"stderr"`
		Error  *struct {
			Type      string `json:"type"`
			Message   string `json:"message"`
			Traceback string `json:"traceback"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		fmt.Fprintf(stderr, "pyexec: the service answered %d with something that is not JSON\n", res.StatusCode)
		return exitUsage
	}
	fmt.Fprint(stdout, ans.Stdout)
	fmt.Fprint(stderr, ans.Stderr)
	if ans.Error != nil {
		if ans.Error.Traceback != "" {
			fmt.Fprint(stderr, ans.Error.Traceback)
		}
		fmt.Fprintf(stderr, "pyexec: %s: %s\n", ans.Error.Type, ans.Error.Message)
		if scriptError(res.StatusCode, ans.Error.Type) {
			return exitScriptError
		}
		return exitUsage
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, ans.Result, "", "  "); err != nil {
		pretty.Reset()
		pretty.Write(ans.Result)
	}
	fmt.Fprintln(stdout, pretty.String())
	return exitOK
}

// scriptError tells failures of the script (exit 1) from failures to get
// it run at all (exit 2).
func scriptError(status int, typ string) bool {
	switch typ {
	case "validation_error", "runtime_error", "invalid_result", "timeout",
		"memory_limit", "output_limit", "sandbox_error":
		return status == http.StatusOK || status == http.StatusBadRequest
	}
	return false
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
