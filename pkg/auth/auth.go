// Package auth signs and verifies the JWT (HS256) tokens of danmaku.
//
// Claims: sub (user id), name, exp, role (viewer | mod | streamer | service)
// and rooms (the rooms a mod or streamer may moderate, ["*"] for all).
// Only HS256 is accepted: tokens with alg "none" or any other algorithm are
// refused, as are expired and not-yet-valid tokens.
package auth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Roles.
const (
	RoleViewer   = "viewer"
	RoleMod      = "mod"
	RoleStreamer = "streamer"
	RoleService  = "service"
)

// Errors.
var (
	ErrNoSecret    = errors.New("auth: empty secret")
	ErrInvalid     = errors.New("auth: invalid token")
	ErrBadRole     = errors.New("auth: unknown role")
	ErrMissingSub  = errors.New("auth: token has no sub")
	ErrExpired     = errors.New("auth: token expired")
	ErrNotYetValid = errors.New("auth: token not valid yet")
)

// Claims are the claims of a danmaku token.
type Claims struct {
	Name  string   `json:"name,omitempty"`
	Role  string   `json:"role"`
	Rooms []string `json:"rooms,omitempty"`
	// Device optionally identifies the client device; a second login of
	// the same user and device replaces the first.
	Device string `json:"dev,omitempty"`
	jwt.RegisteredClaims
}

// UID returns the user id (sub).
func (c *Claims) UID() string { return c.Subject }

// CanModerate reports whether the claims allow moderating room: service
// tokens everywhere, mods and streamers in the rooms they list.
func (c *Claims) CanModerate(room string) bool {
	switch c.Role {
	case RoleService:
		return true
	case RoleMod, RoleStreamer:
		return slices.Contains(c.Rooms, "*") || slices.Contains(c.Rooms, room)
	}
	return false
}

// RoleIn is the role the token has in room: a mod or streamer token that
// does not cover room is a viewer there (its sends carry no role badge,
// get no moderator exemptions and no privileged display modes).
func (c *Claims) RoleIn(room string) string {
	if (c.Role == RoleMod || c.Role == RoleStreamer) && !c.CanModerate(room) {
		return RoleViewer
	}
	return c.Role
}

// Signer signs and verifies tokens with one HS256 secret. It is safe for
// concurrent use.
type Signer struct {
	secret []byte
	parser *jwt.Parser
}

// NewSigner returns a Signer for secret.
func NewSigner(secret string) (*Signer, error) {
	if secret == "" {
		return nil, ErrNoSecret
	}
	return &Signer{
		secret: []byte(secret),
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithLeeway(5*time.Second),
		),
	}, nil
}

// Sign issues a token for sub with the given name, role and rooms, valid for
// ttl from now.
func (s *Signer) Sign(sub, name, role string, rooms []string, ttl time.Duration) (string, error) {
	if sub == "" {
		return "", ErrMissingSub
	}
	if !validRole(role) {
		return "", fmt.Errorf("%w: %q", ErrBadRole, role)
	}
	now := time.Now()
	c := Claims{
		Name:  name,
		Role:  role,
		Rooms: rooms,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Second)),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	return s.SignClaims(c)
}

// SignClaims signs c as is (tests use it for expired and odd tokens).
func (s *Signer) SignClaims(c Claims) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.secret)
}

// Verify parses and checks a token: signature, algorithm HS256, exp and nbf,
// a sub and a known role. The returned error wraps ErrInvalid, ErrExpired or
// ErrNotYetValid.
func (s *Signer) Verify(token string) (*Claims, error) {
	var c Claims
	_, err := s.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.secret, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return nil, ErrNotYetValid
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, ErrMissingSub)
	}
	if c.Role == "" {
		c.Role = RoleViewer
	}
	if !validRole(c.Role) {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, ErrBadRole)
	}
	if len(c.Name) > 64 || len(c.Subject) > 128 {
		return nil, fmt.Errorf("%w: sub or name too long", ErrInvalid)
	}
	for _, r := range c.Rooms {
		if r != "*" && !protocol.ValidRoom(r) {
			return nil, fmt.Errorf("%w: bad room %q", ErrInvalid, r)
		}
	}
	return &c, nil
}

func validRole(r string) bool {
	switch r {
	case RoleViewer, RoleMod, RoleStreamer, RoleService:
		return true
	}
	return false
}
