package jail

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/pyexec/pyexec"
)

// ProtocolVersion is the version of the line protocol spoken with the
// harness; a harness announcing another version is refused.
const ProtocolVersion = 1

// ErrLineTooLong is returned when a protocol line exceeds the maximum size.
var ErrLineTooLong = errors.New("protocol line too long")

// readyMsg is the harness's first line.
type readyMsg struct {
	Ready    bool   `json:"ready"`
	Protocol int    `json:"protocol"`
	PID      int    `json:"pid"`
	Python   string `json:"python"`
	Numpy    string `json:"numpy"`
	Pandas   string `json:"pandas"`
	Zygote   bool   `json:"zygote"`
	// The zygote's anonymous memory moved into sealed memory files (bytes
	// of address space), or why it was not: for the log only.
	SharedMemory      int64  `json:"shared_memory"`
	SharedMemoryError string `json:"shared_memory_error"`
	// Which loop forks the children: "native" (C, the interpreter idle
	// between forks) or "python" (the C library is not built). For the
	// log only.
	ForkLoop string `json:"fork_loop"`
}

// requestLimits travel with each request so the harness applies the same
// limits the service advertises.
type requestLimits struct {
	MaxOutputBytes int    `json:"max_output_bytes"`
	MaxScriptBytes int    `json:"max_script_bytes"`
	Validation     string `json:"validation"`
	// Output files: how many, and how many bytes in all, to return.
	MaxOutputFiles      int `json:"max_output_files"`
	MaxOutputFilesBytes int `json:"max_output_files_bytes"`
	// MaxFigures and MaxFigurePixels bound the figures drawn after main
	// returns; their PNGs share a budget of MaxOutputBytes of base64.
	MaxFigures      int `json:"max_figures"`
	MaxFigurePixels int `json:"max_figure_pixels"`
}

// fileMsg is an input file of a request, or an output file of a reply;
// content is base64 either way.
type fileMsg struct {
	Path      string `json:"path"`
	Content   string `json:"content"`
	MediaType string `json:"media_type,omitempty"`
}

// leftOutMsg is a file under output/ the harness did not return.
type leftOutMsg struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// requestMsg is one script sent to the harness. ID is a random value drawn
// for this message alone, never the client's request id.
type requestMsg struct {
	ID        string        `json:"id"`
	Script    string        `json:"script"`
	TimeoutMS int64         `json:"timeout_ms"`
	Limits    requestLimits `json:"limits"`
	// Args is the request's JSON object of keyword arguments for main,
	// left out when it has none.
	Args json.RawMessage `json:"args,omitempty"`
	// Files are written into the script's working directory before it
	// starts; the service has already checked them.
	Files []fileMsg `json:"files,omitempty"`
}

// replyError is the error object of a reply.
type replyError struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	Traceback string `json:"traceback,omitempty"`
}

// replyMsg is the harness's answer to one request: written by a process
// the script may control, so Worker.reply trusts none of it.
type replyMsg struct {
	ID              string          `json:"id"`
	Result          json.RawMessage `json:"result"`
	Stdout          string          `json:"stdout"`
	Stderr          string          `json:"stderr"`
	StdoutTruncated bool            `json:"stdout_truncated"`
	StderrTruncated bool            `json:"stderr_truncated"`
	Error           *replyError     `json:"error"`
	// Files, FilesLeftOut, FilesTruncated: what the script left under
	// output/, as the harness found it.
	Files          []fileMsg     `json:"files"`
	FilesLeftOut   []leftOutMsg  `json:"files_left_out"`
	FilesTruncated bool          `json:"files_truncated"`
	Figures        []replyFigure `json:"figures"`
}

// replyFigure is one figure the script left open: its PNG in base64, or
// why it was not drawn.
type replyFigure struct {
	PNG     string `json:"png"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	Omitted string `json:"omitted"`
}

// lineReader reads newline-terminated lines of at most max bytes.
// Unlike bufio.Scanner it has no hidden 64 KiB ceiling, and unlike
// ReadBytes it never buffers more than max bytes of one line.
type lineReader struct {
	r   *bufio.Reader
	max int
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64*1024), max: max}
}

// next returns the next line without its newline. A line over max bytes
// yields ErrLineTooLong (the rest of it is discarded, so the reader stays in
// step). A final line without a newline yields io.ErrUnexpectedEOF.
func (l *lineReader) next() ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := l.r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > l.max+1 {
				tooLong = true
				line = nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch {
		case err == nil:
			if tooLong {
				return nil, fmt.Errorf("%w: over %d bytes", ErrLineTooLong, l.max)
			}
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(line) == 0 && !tooLong {
				return nil, io.EOF
			}
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// encodeLine marshals v as one protocol line.
func encodeLine(v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// decodeReady parses and checks the ready line.
func decodeReady(line []byte) (*readyMsg, error) {
	var m readyMsg
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("decode ready line: %w", err)
	}
	if !m.Ready {
		return nil, errors.New("decode ready line: not a ready message")
	}
	if m.Protocol != ProtocolVersion {
		return nil, fmt.Errorf("harness speaks protocol %d, want %d", m.Protocol, ProtocolVersion)
	}
	return &m, nil
}

// decodeReply parses a reply line and checks it answers request id.
func decodeReply(line []byte, id string) (*replyMsg, error) {
	var m replyMsg
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, fmt.Errorf("decode reply: %w", err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("decode reply: answers request %q, want %q", m.ID, id)
	}
	if m.Error == nil && len(m.Result) == 0 {
		return nil, errors.New("decode reply: neither result nor error")
	}
	return &m, nil
}

// requestLine encodes one script for the harness, with a message id drawn
// for this message alone: a script can read it (it is in its interpreter's
// memory) but it names no other request, and the client's request id never
// reaches the jail.
func (c *Config) requestLine(req pyexec.Request) (line []byte, msgID string, err error) {
	msgID = newMessageID()
	msg := requestMsg{
		ID: msgID, Script: req.Script, TimeoutMS: req.Timeout.Milliseconds(), Args: req.Args,
		Limits: requestLimits{
			MaxOutputBytes:      c.MaxOutputBytes,
			MaxScriptBytes:      c.MaxScriptBytes,
			Validation:          c.Validation.String(),
			MaxOutputFiles:      c.MaxOutputFiles,
			MaxOutputFilesBytes: c.MaxOutputFilesBytes,
			MaxFigures:          MaxFigures,
			MaxFigurePixels:     MaxFigurePixels,
		},
	}
	for _, f := range req.Files {
		msg.Files = append(msg.Files, fileMsg{Path: f.Path, Content: base64.StdEncoding.EncodeToString(f.Content)})
	}
	line, err = encodeLine(msg)
	return line, msgID, err
}

// decodeAnswer turns a reply line into a response; garbled is set (and
// the response is a sandbox error) when the line is not a reply to msgID.
//
// Every byte of the line comes from a process that ran, or could have run,
// the script, which can write any line on its channel, with the real
// message id (it is in its own interpreter's memory), and stay alive. So
// nothing read here lets a worker serve again (every worker serves one
// script) or decides anything beyond this answer. What each field can be
// made to say, and why acting on it is safe, is noted where it is read.
func decodeAnswer(cfg *Config, line []byte, msgID string) (resp *pyexec.Response, garbled error) {
	// id: a line answering another message (a guess, or a stale id) is
	// refused; the right id only lets the script answer for itself.
	m, err := decodeReply(line, msgID)
	if err != nil {
		return &pyexec.Response{Error: pyexec.Errorf(pyexec.CodeSandbox, "the sandbox sent an invalid reply")}, err
	}
	// stdout, stderr: the script's own output, whatever it claims. The cap
	// is applied here as well as in the harness; a script's truncation flag
	// can only mark its own output cut, never hide a cut made here.
	resp = &pyexec.Response{}
	resp.Stdout, resp.StdoutTruncated = capText(m.Stdout, cfg.MaxOutputBytes, m.StdoutTruncated)
	resp.Stderr, resp.StderrTruncated = capText(m.Stderr, cfg.MaxOutputBytes, m.StderrTruncated)
	// figures: the script's own drawings, whatever they claim to be; each
	// is checked here to be a PNG, and its size is read from the PNG.
	resp.Figures = checkFigures(m.Figures, cfg.MaxOutputBytes)
	if m.Error != nil {
		// error.type: a script can claim any outcome for itself; only the
		// codes a script can cause are taken, anything else reads as a
		// sandbox failure. It decides this answer only.
		// message, traceback: the script's own text for its own client.
		code := pyexec.Code(m.Error.Type)
		if !pyexec.IsScriptCode(code) {
			code = pyexec.CodeSandbox
		}
		resp.Error = &pyexec.Error{Code: code, Message: m.Error.Message, Traceback: m.Error.Traceback}
		if code == pyexec.CodeMemoryLimit {
			resp.Error.Message = fmt.Sprintf("script exceeded the memory limit (%d MB)", cfg.MemoryMB)
		}
	} else if err := checkResult(m.Result, cfg.MaxOutputBytes); err != nil {
		// result: passed to the client as it is, so it is checked here to
		// be JSON any client reads: within the cap, UTF-8, no lone
		// surrogate.
		resp.Error = err
	} else {
		resp.Result = m.Result
	}
	// files: the script's own files for its own client; what it claims
	// about them (sizes, count, paths) is checked again here.
	resp.Files, resp.FilesLeftOut, resp.FilesTruncated = checkFiles(m, cfg.MaxOutputFiles, cfg.MaxOutputFilesBytes)
	return resp, nil
}

// capText cuts s to at most max bytes, at a character boundary, and says
// whether it is cut (or was already, as claimed).
func capText(s string, max int, claimed bool) (string, bool) {
	if len(s) <= max {
		return s, claimed
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}

// checkResult refuses a result no JSON reader could take as it is: over
// the cap, not UTF-8, or holding half of a surrogate pair. raw is already
// known to be JSON (the reply decoded).
func checkResult(raw []byte, max int) *pyexec.Error {
	if len(raw) > max {
		return pyexec.Errorf(pyexec.CodeOutputLimit, "result is %d bytes, over the %d-byte limit", len(raw), max)
	}
	if !utf8.Valid(raw) {
		return pyexec.Errorf(pyexec.CodeInvalidResult, "Returned value is not valid JSON: it holds bytes that are not UTF-8")
	}
	if esc, ok := pyexec.LoneSurrogate(raw); ok {
		return pyexec.Errorf(pyexec.CodeInvalidResult,
			"Returned value is not valid JSON: a string holds %s, half of a surrogate pair without the other half", esc)
	}
	return nil
}
