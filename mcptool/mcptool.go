// Package mcptool is pyexec as a Model Context Protocol tool: the
// definition of run_python (its description, input and output schemas) and
// the formatting of a script's outcome as a tool result. The service's /mcp
// endpoint and the command-line client's stdio server both build their
// server here, each with its own way to run a script.
package mcptool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/wire"
)

// ToolName is the name of the one tool.
const ToolName = "run_python"

// RunFunc runs one script: on the service's executor in process, or over
// HTTP against a running service. A zero req.Timeout asks for the service's
// default. Its contract is pyexec.Executor's: the script's own failures come
// back in Response.Error, and an error means there is no outcome.
type RunFunc func(ctx context.Context, req pyexec.Request) (*pyexec.Response, error)

// Input is the tool's arguments.
type Input struct {
	Script  string   `json:"script" jsonschema:"Python source that defines def main(): returning JSON-serialisable data"`
	Timeout *float64 `json:"timeout,omitempty" jsonschema:"wall-clock limit in seconds (the service's default when left out)"`
	// Args is typed for its schema only: the handler passes on the JSON
	// text the client sent, so that numbers reach main as written.
	Args  map[string]any `json:"args,omitempty" jsonschema:"keyword arguments for main(), as a JSON object: {\"city\": \"Oslo\"} calls main(city=\"Oslo\")"`
	Files []InputFile    `json:"files,omitempty" jsonschema:"input files, written into the script's working directory (its current directory) before it starts"`
}

// InputFile is an input file of the tool's arguments.
type InputFile struct {
	Path     string `json:"path" jsonschema:"relative path in the working directory, such as data/sales.csv (no .. or absolute path)"`
	Content  string `json:"content" jsonschema:"the file's text, or its bytes in base64 when encoding is base64"`
	Encoding string `json:"encoding,omitempty" jsonschema:"utf-8 (the default) or base64"`
}

// OutputFile is a file the script left in output/.
type OutputFile struct {
	Path      string `json:"path" jsonschema:"relative to output/"`
	Size      int    `json:"size"`
	MediaType string `json:"media_type"`
	Encoding  string `json:"encoding" jsonschema:"utf-8: content is the text; base64: content is the bytes in base64"`
	Content   string `json:"content"`
}

// LeftOutFile is a file in output/ that is not returned, and why.
type LeftOutFile struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Output is the tool's structured result, the same fields as the answer
// of POST /execute.
type Output struct {
	// Result is main()'s return value; null when the script failed.
	Result          any           `json:"result" jsonschema:"the JSON value main() returned; null when the script failed"`
	Stdout          string        `json:"stdout" jsonschema:"what the script printed on standard output"`
	Stderr          string        `json:"stderr" jsonschema:"what the script printed on standard error"`
	StdoutTruncated bool          `json:"stdout_truncated,omitempty" jsonschema:"stdout was cut at the output limit"`
	StderrTruncated bool          `json:"stderr_truncated,omitempty" jsonschema:"stderr was cut at the output limit"`
	Error           *Error        `json:"error" jsonschema:"why the script failed; null on success"`
	Files           []OutputFile  `json:"files,omitempty" jsonschema:"the files the script left in output/ in its working directory"`
	FilesLeftOut    []LeftOutFile `json:"files_left_out,omitempty" jsonschema:"files in output/ that are not returned (links, special files, over the limits), with the reason"`
	FilesTruncated  bool          `json:"files_truncated,omitempty" jsonschema:"output/ held more files than were looked at: files_left_out does not name them all"`
	// Figures describe the images of the result's content, in order; the
	// PNGs themselves are that content, not repeated here.
	Figures []Figure `json:"figures,omitempty" jsonschema:"the matplotlib figures left open when main() returned, in order; each drawn one is an image of the tool result's content"`
}

// Figure is one figure of a run, as in the answer of POST /execute but
// without its data.
type Figure struct {
	MediaType string `json:"media_type" jsonschema:"image/png"`
	Width     int    `json:"width" jsonschema:"in pixels"`
	Height    int    `json:"height" jsonschema:"in pixels"`
	Omitted   string `json:"omitted,omitempty" jsonschema:"why the figure was not drawn (a limit it is over); it then has no image"`
}

// Error is a failed run's error, as in the answer of POST /execute.
type Error struct {
	Type      string `json:"type" jsonschema:"the error code: runtime_error, timeout, memory_limit, validation_error..."`
	Message   string `json:"message"`
	Traceback string `json:"traceback,omitempty" jsonschema:"the Python traceback of a runtime_error"`
}

// NewServer returns an MCP server whose one tool, run_python, runs scripts
// with run. limits, as /health reports them, are stated in the tool's
// description and schema; a zero field is left out.
func NewServer(limits pyexec.Limits, run RunFunc) (*mcp.Server, error) {
	tool, err := Tool(limits)
	if err != nil {
		return nil, err
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "pyexec", Title: "pyexec: sandboxed Python", Version: version()}, &mcp.ServerOptions{
		// The one tool never changes, so there is no list change to tell
		// (the SDK would say there is by default). With nothing to notify,
		// a subscriptions/listen answers at once instead of holding its
		// HTTP request until the client leaves.
		Capabilities: &mcp.ServerCapabilities{Logging: &mcp.LoggingCapabilities{}, Tools: &mcp.ToolCapabilities{}},
	})
	mcp.AddTool(s, tool, handler(run))
	return s, nil
}

// Tool is the definition of run_python under limits.
func Tool(limits pyexec.Limits) (*mcp.Tool, error) {
	in, err := jsonschema.For[Input](nil)
	if err != nil {
		return nil, fmt.Errorf("run_python input schema: %w", err)
	}
	timeout := in.Properties["timeout"]
	timeout.ExclusiveMinimum = jsonschema.Ptr(0.0)
	if limits.TimeoutMax > 0 {
		timeout.Maximum = jsonschema.Ptr(limits.TimeoutMax)
	}
	// null is accepted as on /execute, where it is the same as no args.
	args := in.Properties["args"]
	args.Type, args.Types = "", []string{"null", "object"}
	files := in.Properties["files"]
	files.Type, files.Types = "", []string{"null", "array"}
	out, err := jsonschema.For[Output](nil)
	if err != nil {
		return nil, fmt.Errorf("run_python output schema: %w", err)
	}
	return &mcp.Tool{
		Name:         ToolName,
		Title:        "Run Python in a sandbox",
		Description:  Description(limits),
		InputSchema:  in,
		OutputSchema: out,
		Annotations: &mcp.ToolAnnotations{
			ReadOnlyHint:  true, // nothing outside the sandbox changes
			OpenWorldHint: jsonschema.Ptr(false),
		},
	}, nil
}

// Description tells a model what the sandbox offers and how to use it.
func Description(l pyexec.Limits) string {
	var b strings.Builder
	b.WriteString(`Run a Python 3 script in an isolated sandbox and get back what main() returned and what the script printed.

The script must define a top-level "def main():"; it is called once and its return value is the result. To pass data in, give the args object: main is called with its members as keyword arguments (args {"city": "Oslo"} calls main(city="Oslo"); parameters left out take their defaults). Without args, main must take no required arguments. Return JSON-serialisable data (dict, list, str, int, float, bool, None); numpy scalars and arrays, pandas DataFrames (a list of row objects, missing values as null) and Series, dates and times (ISO 8601 strings) and Decimals are converted as well, other objects are not (the error says how to convert them). Everything printed to stdout and stderr is captured and returned as well.

To pass files in, give files: each {"path": "data/sales.csv", "content": "..."} (add "encoding": "base64" for binary content) is written, before the script starts, into its working directory, which is its current directory. Files the script writes under output/ in that directory (open("output/summary.csv", "w")) come back with the result: text files as text, others base64.

Available: the standard library, numpy, pandas (with python-dateutil and tzdata) and matplotlib. Nothing else can be installed. Charts: pyplot figures still open when main returns come back as PNG images (at most 10, each at most 4096 x 4096 pixels at figsize x dpi); plt.show() is not needed. There is no network access. Files can be written only under /tmp; the rest of the file system is read-only. Each call runs in a fresh interpreter: nothing carries over from one call to the next, so send the whole program every time.
`)
	var limits []string
	if l.TimeoutDefault > 0 {
		s := "timeout " + seconds(l.TimeoutDefault) + " s by default"
		if l.TimeoutMax > 0 {
			s += " (the timeout argument may raise it to " + seconds(l.TimeoutMax) + " s)"
		}
		limits = append(limits, s)
	}
	if l.MemoryMB > 0 {
		limits = append(limits, strconv.Itoa(l.MemoryMB)+" MB of memory")
	}
	if l.TmpfsMB > 0 {
		limits = append(limits, strconv.Itoa(l.TmpfsMB)+" MB in /tmp")
	}
	if l.MaxScriptBytes > 0 {
		limits = append(limits, "script up to "+strconv.Itoa(l.MaxScriptBytes)+" bytes")
	}
	if l.MaxOutputBytes > 0 {
		limits = append(limits, "result up to "+strconv.Itoa(l.MaxOutputBytes)+
			" bytes as JSON, stdout and stderr each cut at that size")
	}
	if l.MaxInputFiles > 0 {
		limits = append(limits, "up to "+strconv.Itoa(l.MaxInputFiles)+" input files, "+strconv.Itoa(l.MaxInputBytes)+" bytes in all")
	}
	if l.MaxOutputFiles > 0 {
		limits = append(limits, "up to "+strconv.Itoa(l.MaxOutputFiles)+" output files returned, "+strconv.Itoa(l.MaxOutputFilesBytes)+" bytes in all (the rest are listed as left out)")
	}
	if len(limits) > 0 {
		b.WriteString("\nLimits: " + strings.Join(limits, "; ") + ".\n")
	}
	b.WriteString(`
On failure the result is an error with a type: runtime_error (an exception; the traceback is included), timeout, memory_limit, output_limit, invalid_result (main() returned something that is not JSON), validation_error (a syntax error, no main(), the script is too large, or args that main() cannot take: a required parameter missing, or a member main() has no parameter for).`)
	return b.String()
}

// version is the module's version as the build recorded it.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

func seconds(s float64) string { return strconv.FormatFloat(s, 'f', -1, 64) }

// handler runs the script and turns its outcome into a tool result. A
// script that failed, and a run refused by the service (overloaded,
// invalid arguments...), are results with IsError set, so that the model
// reads why and can correct its script or try again; only a cancelled
// call, which no one waits for any more, is an error of the protocol.
//
// Its structured output is typed any and left nil, with the result's
// StructuredContent set here: for a typed output the SDK checks the output
// against its schema by decoding it into float64s and encoding it again,
// which rounds an integer past 2^53 that /execute would answer exactly.
func handler(run RunFunc) mcp.ToolHandlerFor[Input, any] {
	return func(ctx context.Context, call *mcp.CallToolRequest, in Input) (*mcp.CallToolResult, any, error) {
		if call != nil && call.Params != nil {
			if e := notText(call.Params.Arguments); e != nil {
				return structured(Format(&pyexec.Response{Error: e}))
			}
		}
		req := pyexec.Request{Script: in.Script, Args: rawArgs(call, in)}
		for _, f := range in.Files {
			data, err := wire.File{Path: f.Path, Content: f.Content, Encoding: f.Encoding}.Decode()
			if err != nil {
				return structured(Format(&pyexec.Response{Error: &pyexec.Error{Code: pyexec.CodeInvalidRequest, Message: err.Error()}}))
			}
			req.Files = append(req.Files, pyexec.File{Path: f.Path, Content: data})
		}
		if in.Timeout != nil {
			// Kept positive when it rounds to zero, which would mean "the
			// default"; negative when it is not positive, so it is refused;
			// the longest duration when it is longer, so it is refused as
			// over the maximum (a conversion would wrap it around).
			switch secs := *in.Timeout; {
			case !(secs > 0):
				req.Timeout = -1
			case secs >= float64(math.MaxInt64)/float64(time.Second):
				req.Timeout = math.MaxInt64
			default:
				req.Timeout = max(time.Duration(secs*float64(time.Second)), 1)
			}
		}
		resp, err := run(ctx, req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			resp = &pyexec.Response{Error: refusal(err)}
		}
		return structured(Format(resp))
	}
}

// maxStructuredDepth bounds the nesting of the structured output. MCP
// clients built on the Go SDK read no message nested more than 1000 levels
// deep, and one they cannot read ends their session; the message adds two
// levels around the output.
const maxStructuredDepth = 990

// structured sets a result's StructuredContent to out as JSON, numbers
// as they were written (see handler). A result nested too deeply to reach
// every client is refused as invalid_result, with the script's output.
func structured(res *mcp.CallToolResult, out Output, err error) (*mcp.CallToolResult, any, error) {
	if err != nil {
		return nil, nil, err
	}
	data, err := json.Marshal(out)
	if err != nil {
		return nil, nil, err
	}
	if d := depth(data); d > maxStructuredDepth {
		return structured(Format(&pyexec.Response{Stdout: out.Stdout, Stderr: out.Stderr,
			StdoutTruncated: out.StdoutTruncated, StderrTruncated: out.StderrTruncated,
			Error: &pyexec.Error{Code: pyexec.CodeInvalidResult, Message: fmt.Sprintf(
				"main() returned JSON nested %d levels deep, more than MCP clients read; return it flatter, or as a string", d-1)}}))
	}
	res.StructuredContent = json.RawMessage(data)
	return res, nil, nil
}

// depth is how deeply the objects and arrays of the JSON text data nest.
func depth(data []byte) int {
	d, deepest := 0, 0
	inString, escaped := false, false
	for _, b := range data {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch b {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case b == '"':
			inString = true
		case b == '{' || b == '[':
			d++
			deepest = max(deepest, d)
		case b == '}' || b == ']':
			d--
		}
	}
	return deepest
}

// rawArgs is the args object as the client wrote it, or nil when it gave
// none. A large integer decoded into in.Args would already be rounded.
func rawArgs(call *mcp.CallToolRequest, in Input) json.RawMessage {
	if call != nil && call.Params != nil {
		var fields map[string]json.RawMessage
		if json.Unmarshal(call.Params.Arguments, &fields) == nil {
			if raw := fields["args"]; len(raw) > 0 && string(raw) != "null" {
				return raw
			}
			return nil
		}
	}
	if in.Args == nil {
		return nil
	}
	data, err := json.Marshal(in.Args)
	if err != nil {
		return nil
	}
	return data
}

// notText refuses arguments whose script the JSON decoder would change, as
// POST /execute does: bytes that are not UTF-8, and an escaped surrogate
// without its partner, both become U+FFFD, a script the client never sent.
func notText(args json.RawMessage) *pyexec.Error {
	if !utf8.Valid(args) {
		return &pyexec.Error{Code: pyexec.CodeInvalidRequest, Message: "the arguments must be UTF-8"}
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(args, &fields) != nil {
		return nil // the SDK has refused them already
	}
	for _, name := range []string{"script", "args", "files"} {
		if esc, ok := pyexec.LoneSurrogate(fields[name]); ok {
			return &pyexec.Error{Code: pyexec.CodeInvalidRequest,
				Message: `"` + name + `" contains ` + esc + `, half of a surrogate pair without the other half: not a character`}
		}
	}
	return nil
}

// refusal is the error shown for a run that has no outcome.
func refusal(err error) *pyexec.Error {
	var pe *pyexec.Error
	if errors.As(err, &pe) {
		// The message only: the cause may hold internal detail.
		return &pyexec.Error{Code: pe.Code, Message: pe.Message, Traceback: pe.Traceback}
	}
	return &pyexec.Error{Code: pyexec.CodeInternal, Message: "the pyexec service could not be reached: " + err.Error()}
}

// Format turns an outcome into the tool's result: text the model reads
// (stdout, stderr, then the result or the error) and the structured
// Output. IsError is set when the script failed.
func Format(resp *pyexec.Response) (*mcp.CallToolResult, Output, error) {
	out := Output{
		Stdout:          resp.Stdout,
		Stderr:          resp.Stderr,
		StdoutTruncated: resp.StdoutTruncated,
		StderrTruncated: resp.StderrTruncated,
	}
	var text strings.Builder
	stream(&text, "stdout", resp.Stdout, resp.StdoutTruncated)
	stream(&text, "stderr", resp.Stderr, resp.StderrTruncated)
	files(&text, &out, resp)
	var images []mcp.Content
	for i, f := range resp.Figures {
		out.Figures = append(out.Figures, Figure{MediaType: "image/png", Width: f.Width, Height: f.Height, Omitted: f.Omitted})
		if f.Omitted != "" {
			fmt.Fprintf(&text, "figure %d: not drawn: %s\n", i+1, f.Omitted)
			continue
		}
		fmt.Fprintf(&text, "figure %d: %d x %d PNG, an image of this result\n", i+1, f.Width, f.Height)
		images = append(images, &mcp.ImageContent{Data: f.PNG, MIMEType: "image/png"})
	}
	if e := resp.Error; e != nil {
		out.Error = &Error{Type: string(e.Code), Message: e.Message, Traceback: e.Traceback}
		fmt.Fprintf(&text, "error: %s: %s\n", e.Code, e.Message)
		if e.Traceback != "" {
			text.WriteString(e.Traceback)
			if !strings.HasSuffix(e.Traceback, "\n") {
				text.WriteString("\n")
			}
		}
		return &mcp.CallToolResult{IsError: true, Content: append([]mcp.Content{&mcp.TextContent{Text: text.String()}}, images...)}, out, nil
	}
	result, err := decodeResult(resp.Result)
	if err != nil {
		return nil, Output{}, fmt.Errorf("the service answered a result that is not JSON: %w", err)
	}
	out.Result = result
	fmt.Fprintf(&text, "result: %s\n", resp.Result)
	return &mcp.CallToolResult{Content: append([]mcp.Content{&mcp.TextContent{Text: text.String()}}, images...)}, out, nil
}

// files adds the output files to out, and to the text: each one's path,
// type and size, and the content of a text file (a binary one is in the
// structured output only, as base64).
func files(b *strings.Builder, out *Output, resp *pyexec.Response) {
	for _, f := range resp.Files {
		wf := wire.NewFile(f.Path, f.Content)
		out.Files = append(out.Files, OutputFile{Path: f.Path, Size: len(f.Content), MediaType: f.MediaType, Encoding: wf.Encoding, Content: wf.Content})
		fmt.Fprintf(b, "file output/%s (%s, %d bytes)", f.Path, f.MediaType, len(f.Content))
		if wf.Encoding == wire.EncodingUTF8 {
			b.WriteString(":\n" + wf.Content)
			if !strings.HasSuffix(wf.Content, "\n") {
				b.WriteString("\n")
			}
		} else {
			b.WriteString(": binary, base64 in the structured result's files\n")
		}
		b.WriteString("\n")
	}
	for _, f := range resp.FilesLeftOut {
		out.FilesLeftOut = append(out.FilesLeftOut, LeftOutFile(f))
		fmt.Fprintf(b, "file output/%s left out: %s\n", f.Path, f.Reason)
	}
	out.FilesTruncated = resp.FilesTruncated
	if resp.FilesTruncated {
		b.WriteString("output/ held more files than were looked at\n")
	}
}

func stream(b *strings.Builder, name, text string, truncated bool) {
	if text == "" {
		return
	}
	b.WriteString(name + ":\n" + text)
	if !strings.HasSuffix(text, "\n") {
		b.WriteString("\n")
	}
	if truncated {
		b.WriteString("[" + name + " truncated at the output limit]\n")
	}
	b.WriteString("\n")
}

// decodeResult keeps numbers as they were written (json.Number), so a
// large integer is not rounded through float64.
func decodeResult(raw json.RawMessage) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}
