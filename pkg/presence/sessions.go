package presence

import (
	"context"
	"errors"
	"time"
)

// ErrNotHolder is returned by [Sessions.Refresh] when another connection
// has claimed the session since: the caller's connection has been replaced
// and should close.
var ErrNotHolder = errors.New("presence: session held by another connection")

// Sessions is the registry of logged-in sessions, one holder per user and
// device, shared by every gateway. A second login of the same user on the
// same device claims the session; the gateway that held it learns the old
// holder's address from Claim and kicks that connection.
//
// A holder address is opaque to the registry; gateways use
// "gatewayID/connID". A session expires ttl after its last Claim or Refresh,
// so the sessions of a gateway that dies without releasing them disappear
// by themselves. Implementations are safe for concurrent use.
type Sessions interface {
	// Claim records addr as the holder of (uid, device) for ttl and returns
	// the previous live holder, or "" when there was none or it was addr
	// itself.
	Claim(ctx context.Context, uid, device, addr string, ttl time.Duration) (prev string, err error)
	// Refresh extends addr's hold on (uid, device) to ttl from now. When the
	// session has expired it is claimed again for addr; when another
	// address holds it, Refresh changes nothing and returns ErrNotHolder.
	Refresh(ctx context.Context, uid, device, addr string, ttl time.Duration) error
	// Release removes the session if addr still holds it; otherwise (it
	// was claimed by another connection, or expired) it does nothing.
	Release(ctx context.Context, uid, device, addr string) error
}
