package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/client"
	"github.com/pyexec/pyexec/mcptool"
)

// runMCP is "pyexec mcp": an MCP server on stdin and stdout, for clients
// that start their tools as local processes, whose run_python tool sends
// each script to the service at --url. It ends when stdin does.
func runMCP(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("pyexec mcp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", serviceURL(getenv), "service base URL (default $PYEXEC_URL or "+defaultURL+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: pyexec mcp [--url URL]")
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &client.Client{BaseURL: *url, APIKey: getenv("PYEXEC_API_KEY"), HTTP: &http.Client{Timeout: 5 * time.Minute}}
	srv, err := mcptool.NewServer(serviceLimits(ctx, c, stderr), func(ctx context.Context, req pyexec.Request) (*pyexec.Response, error) {
		ans, err := c.Execute(ctx, req)
		if err != nil {
			return nil, err
		}
		return ans.Response, nil
	})
	if err != nil {
		fmt.Fprintln(stderr, "pyexec mcp:", err)
		return exitUsage
	}
	err = srv.Run(ctx, &mcp.IOTransport{Reader: io.NopCloser(stdin), Writer: nopCloser{stdout}})
	if err != nil && ctx.Err() == nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(stderr, "pyexec mcp:", err)
		return exitUsage
	}
	return exitOK
}

// serviceLimits asks the service for the limits it enforces, to state them
// in the tool's description. A service that cannot be reached yet is not
// fatal: the tool is described without them, and each call says what went
// wrong.
func serviceLimits(ctx context.Context, c *client.Client, stderr io.Writer) pyexec.Limits {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := c.Health(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "pyexec mcp: cannot read the limits from %s/health (%v); the tool is described without them\n", c.BaseURL, err)
		return pyexec.Limits{}
	}
	return st.Limits
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
