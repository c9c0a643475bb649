package bus

import (
	"context"
	"errors"
	"time"
)

// Follow reads stream with a consumer opened with opts and hands every
// fetched batch to handle, until ctx is done or the bus is closed. When the
// consumer fails it is closed and reopened after a backoff (50 ms doubling
// to 5 s); onErr, if not nil, hears of each failure. Follow is for readers
// that apply what they read and commit nothing (group-less consumers of the
// control, dispatch and reply streams). It blocks; run it on its own
// goroutine.
func Follow(ctx context.Context, b Bus, stream string, opts ConsumerOptions, handle func([]Record), onErr func(error)) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		c, err := b.Consumer(stream, opts)
		if err == nil {
			for {
				var recs []Record
				recs, err = c.Fetch(ctx)
				if err != nil {
					break
				}
				backoff = 50 * time.Millisecond
				handle(recs)
			}
			_ = c.Close()
		}
		if ctx.Err() != nil || errors.Is(err, ErrClosed) {
			return
		}
		if onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// FollowControl is Follow on the control stream, decoding each event;
// malformed records are skipped.
func FollowControl(ctx context.Context, b Bus, apply func(Control), onErr func(error)) {
	Follow(ctx, b, StreamControl, ConsumerOptions{}, func(recs []Record) {
		for _, rec := range recs {
			var ev Control
			if Unmarshal(rec.Value, &ev) == nil {
				apply(ev)
			}
		}
	}, onErr)
}
