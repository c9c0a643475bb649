package chstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
)

// TestBrokenConn: an insert tries a second connection only when the first
// was gone, never when ClickHouse answered with an error or the caller
// gave up.
func TestBrokenConn(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("query processing: failed to read first block packet: %w", &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}), true},
		{fmt.Errorf("read: %w", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), true},
		{fmt.Errorf("write: %w", syscall.EPIPE), true},
		{fmt.Errorf("read: %w", io.EOF), true},
		{errors.New("code: 60, message: Table danmaku.messages doesn't exist"), false},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
	} {
		if got := brokenConn(tc.err); got != tc.want {
			t.Errorf("brokenConn(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
