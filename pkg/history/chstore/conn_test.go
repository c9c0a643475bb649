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

// TestRetryBroken: an insert that fails on a gone connection, at prepare
// or at send ("write: use of closed network connection", seen in make
// test), runs once more; one ClickHouse refused, or one that worked, does
// not.
func TestRetryBroken(t *testing.T) {
	closed := fmt.Errorf("chstore: insert 1 rows: send data: %w", &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed})
	refused := errors.New("code: 60, message: Table danmaku.messages doesn't exist")
	for _, tc := range []struct {
		errs  []error // what each try returns
		calls int
		err   error
	}{
		{[]error{closed, nil}, 2, nil},
		{[]error{closed, closed}, 2, closed},
		{[]error{refused, nil}, 1, refused},
		{[]error{context.Canceled, nil}, 1, context.Canceled},
		{[]error{nil}, 1, nil},
	} {
		calls := 0
		err := retryBroken(func() error { calls++; return tc.errs[calls-1] })
		if calls != tc.calls || !errors.Is(err, tc.err) && err != tc.err {
			t.Errorf("first try %v: %d tries, error %v; want %d, %v", tc.errs[0], calls, err, tc.calls, tc.err)
		}
	}
}
