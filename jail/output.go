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
// over is closed once more than max bytes have come.
type outputPipe struct {
	f   *os.File
	max int

	mu    sync.Mutex
	buf   []byte
	total int64

	over     chan struct{}
	overOnce sync.Once
	done     chan struct{} // closed when the reader stops
	closed   sync.Once
}

func newOutputPipe(fd, max int) (*outputPipe, error) {
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("output pipe: %w", err)
	}
	p := &outputPipe{f: os.NewFile(uintptr(fd), "output"), max: max, over: make(chan struct{}), done: make(chan struct{})}
	go p.read()
	return p, nil
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
	_ = p.f.SetReadDeadline(time.Now())
	<-p.done
	_ = p.f.SetReadDeadline(time.Time{})
	rc, err := p.f.SyscallConn()
	if err != nil {
		return
	}
	b := make([]byte, 32<<10)
	_ = rc.Read(func(fd uintptr) bool {
		// At most a little past the cap: a writer left running cannot
		// keep this loop going.
		for read := 0; read <= p.max+len(b); {
			n, err := unix.Read(int(fd), b)
			if n <= 0 || err != nil {
				break
			}
			p.keep(b[:n])
			read += n
		}
		return true
	})
}

// awaitEOF waits until every writer has closed the pipe, or the deadline.
func (p *outputPipe) awaitEOF(deadline time.Time) {
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
		_ = p.f.SetReadDeadline(time.Now())
		<-p.done
		_ = p.f.Close()
	})
}
