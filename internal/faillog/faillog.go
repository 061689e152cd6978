// Package faillog logs a failure that repeats on every attempt (a poll, a publish,
// a reconnect) as an episode: once when it begins, then at most every Every while it
// lasts, and once when it ends — so a fault retried hundreds of times a second neither
// floods the log nor goes unseen.
package faillog

import (
	"log/slog"
	"time"
)

// Every is the most often a continuing failure is logged again.
const Every = 5 * time.Second

// Episode is one kind of failure's state. The zero value is ready; it is not safe for
// concurrent use: its owner is the loop that retries.
type Episode struct {
	since, last time.Time
	n           int
}

// Fail records one failed attempt, logging msg at warn level when the episode
// begins and at most every Every after that.
func (f *Episode) Fail(log *slog.Logger, msg string, err error) {
	now := time.Now()
	f.n++
	if f.n == 1 {
		f.since, f.last = now, now
		log.Warn(msg, "err", err)
	} else if now.Sub(f.last) >= Every {
		f.last = now
		log.Warn(msg, "err", err, "failures", f.n, "for", now.Sub(f.since).Round(time.Millisecond))
	}
}

// OK records a success, logging msg at info level if it ends an episode.
func (f *Episode) OK(log *slog.Logger, msg string) {
	if f.n > 0 {
		log.Info(msg, "failures", f.n, "for", time.Since(f.since).Round(time.Millisecond))
		f.n = 0
	}
}
