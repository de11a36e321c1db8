package pool

import (
	"context"
	"sync"

	"github.com/jackc/puddle/v2"
)

// queue holds the requests waiting for a worker, first come first served,
// and hands each the first worker to become ready.
//
// It replaces waiting in puddle's Acquire, which, when a slot frees up
// while a request waits, starts a worker for that request and waits for
// that one: a request that arrived while the workers being made were
// nearly ready then waited for a whole new spawn, and the workers made
// meanwhile sat idle. Here a request never starts a worker; the fillers
// do, and whichever is ready first serves the request that has waited
// longest.
type queue struct {
	warm *puddle.Pool[*slot]

	mu      sync.Mutex
	waiting []chan handed
}

// handed is what a waiting request is given: a worker, or the reason none
// can be started.
type handed struct {
	res *puddle.Resource[*slot]
	err error
}

// take returns the idle worker that became ready first, or waits for the
// next one until ctx or closing ends. A request never overtakes one that
// is already waiting.
func (q *queue) take(ctx context.Context, closing <-chan struct{}) (*puddle.Resource[*slot], error) {
	q.mu.Lock()
	if len(q.waiting) == 0 {
		if res := q.oldestIdle(); res != nil {
			q.mu.Unlock()
			return res, nil
		}
	}
	ch := make(chan handed, 1)
	q.waiting = append(q.waiting, ch)
	q.mu.Unlock()

	var err error
	select {
	case h := <-ch:
		return h.res, h.err
	case <-ctx.Done():
		err = ctx.Err()
	case <-closing:
		err = ErrClosed
	}
	if q.leave(ch) {
		return nil, err
	}
	// Handed a worker as it gave up: it goes to the next in line.
	if h := <-ch; h.res != nil {
		h.res.ReleaseUnused()
		q.handOut()
	}
	return nil, err
}

// leave takes ch out of the line; false if it was served meanwhile.
func (q *queue) leave(ch chan handed) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, w := range q.waiting {
		if w == ch {
			q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
			return true
		}
	}
	return false
}

// handOut gives idle workers to waiting requests, in order. Whatever makes
// a worker idle calls it afterwards.
func (q *queue) handOut() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.waiting) > 0 {
		res := q.oldestIdle()
		if res == nil {
			return
		}
		q.waiting[0] <- handed{res: res}
		q.waiting = q.waiting[1:]
	}
}

// fail answers every waiting request with err: no worker is left and none
// could be started, so waiting on would only end in the queue timeout.
func (q *queue) fail(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, ch := range q.waiting {
		ch <- handed{err: err}
	}
	q.waiting = nil
}

// oldestIdle acquires the idle worker that became ready first, or returns
// nil. A worker that has waited longer has done more of its warm-up (a
// fork child copies the pages scripts touch only once it has waited a
// while), and puddle's own order would hand out the newest first. The
// caller holds q.mu.
func (q *queue) oldestIdle() *puddle.Resource[*slot] {
	idle := q.warm.AcquireAllIdle()
	if len(idle) == 0 {
		return nil
	}
	oldest := 0
	for i, r := range idle {
		if r.Value().ready.Before(idle[oldest].Value().ready) {
			oldest = i
		}
	}
	for i, r := range idle {
		if i != oldest {
			r.ReleaseUnused()
		}
	}
	return idle[oldest]
}
