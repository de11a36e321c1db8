package jail

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// outputPipe reads one of a child's output streams (the read end of its
// stdout or stderr pipe), so what a script printed is the service's own
// measurement: the first max bytes are kept and everything is counted.
// over is closed once more than max bytes have been read (not before the
// watch, or settle).
//
// The pipe is read as it fills only once watch is called (Run calls it
// when a script has run for outputWatchDelay): until then it is a plain
// descriptor the runtime's poller does not know, so a short script's
// print wakes nobody, and what it printed is taken at settle. A script
// that prints more than the pipe holds before then waits for the watch.
type outputPipe struct {
	max int
	fd  int      // the pipe's descriptor, kept raw until watched
	f   *os.File // set by watch
	// rawMu orders reads of fd with its close while the pipe is not
	// watched: a closed number can be another descriptor's the moment
	// after.
	rawMu  sync.Mutex
	rawEnd bool

	mu    sync.Mutex
	buf   []byte
	total int64

	over      chan struct{}
	overOnce  sync.Once
	watchOnce sync.Once     // the watch started, or ruled out by settle or close
	done      chan struct{} // closed when the reader stops, or if it never starts
	closed    sync.Once
}

// outputWatchDelay is how long a script runs before its output pipes are
// read as they fill: the pipe holds 64 KiB meanwhile.
const outputWatchDelay = 2 * time.Millisecond

func newOutputPipe(fd, max int) (*outputPipe, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	return &outputPipe{fd: fd, max: max, over: make(chan struct{}), done: make(chan struct{})}, nil
}

// watch starts reading the pipe as it fills, unless settle or close came
// first.
func (p *outputPipe) watch() {
	p.watchOnce.Do(func() {
		p.f = os.NewFile(uintptr(p.fd), "output")
		go p.read()
	})
}

// watched rules the watch out if it has not started, and returns the
// pipe's file if it has (nil otherwise). Every use of p.f goes through it.
func (p *outputPipe) watched() *os.File {
	p.watchOnce.Do(func() { close(p.done) })
	return p.f
}

// readRaw keeps what an unwatched pipe holds, unless it is closed.
func (p *outputPipe) readRaw() {
	p.rawMu.Lock()
	defer p.rawMu.Unlock()
	if !p.rawEnd {
		p.readNow(p.fd)
	}
}

func (p *outputPipe) read() {
	defer close(p.done)
	b := make([]byte, 32<<10)
	for {
		n, err := p.f.Read(b)
		if n > 0 {
			p.keep(b[:n])
		}
		if err != nil {
			return
		}
	}
}

func (p *outputPipe) keep(b []byte) {
	p.mu.Lock()
	if room := p.max - len(p.buf); room > 0 {
		p.buf = append(p.buf, b[:min(room, len(b))]...)
	}
	p.total += int64(len(b))
	over := p.total > int64(p.max)
	p.mu.Unlock()
	if over {
		p.overOnce.Do(func() { close(p.over) })
	}
}

// settle stops the reader and takes what the pipe holds at this moment:
// bytes written before the child's reply are there when the reply is
// read, whether or not the reader had come to them. What keeps coming
// after (from processes the script left running) is not waited for.
func (p *outputPipe) settle() {
	f := p.watched()
	if f == nil {
		p.readRaw()
		return
	}
	_ = f.SetReadDeadline(time.Now())
	<-p.done
	_ = f.SetReadDeadline(time.Time{})
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		p.readNow(int(fd))
		return true
	})
}

// readNow keeps what the pipe holds, without waiting for more.
func (p *outputPipe) readNow(fd int) {
	b := make([]byte, 32<<10)
	// At most a little past the cap: a writer left running cannot keep
	// this loop going.
	for read := 0; read <= p.max+len(b); {
		n, err := unix.Read(fd, b)
		if n <= 0 || err != nil {
			break
		}
		p.keep(b[:n])
		read += n
	}
}

// awaitEOF waits until every writer has closed the pipe, or the deadline.
func (p *outputPipe) awaitEOF(deadline time.Time) {
	p.watch()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	}
}

// text returns the kept output as text (invalid UTF-8 replaced) and whether
// it was cut.
func (p *outputPipe) text() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cut := len(p.buf)
	truncated := p.total > int64(len(p.buf))
	if truncated && cut > 0 {
		// Not through the middle of a character.
		i := cut - 1
		for i > 0 && i > cut-utf8.UTFMax && !utf8.RuneStart(p.buf[i]) {
			i--
		}
		if !utf8.FullRune(p.buf[i:cut]) {
			cut = i
		}
	}
	return strings.ToValidUTF8(string(p.buf[:cut]), "\uFFFD"), truncated
}

// close stops the reader and releases the pipe. Safe to call twice.
func (p *outputPipe) close() {
	p.closed.Do(func() {
		f := p.watched()
		if f == nil {
			p.rawMu.Lock()
			p.rawEnd = true
			_ = unix.Close(p.fd)
			p.rawMu.Unlock()
			return
		}
		_ = f.SetReadDeadline(time.Now())
		<-p.done
		_ = f.Close()
	})
}
