package redispresence

import (
	"errors"
	"time"
)

// Config configures a Client. Pass it by value to New.
type Config struct {
	// Addr is the Redis address, host:port. Required.
	Addr string
	// Password is the AUTH password. Empty means none.
	Password string
	// DB is the database number. Zero means database 0.
	DB int
	// Prefix is put before every key, so several deployments (or tests)
	// can share one Redis. Empty means "danmaku:".
	Prefix string
	// DialTimeout bounds connecting. Zero means 300 * time.Millisecond.
	DialTimeout time.Duration
	// ReadTimeout bounds waiting for a reply. Zero means
	// 300 * time.Millisecond. Keep it short: a Redis that stops answering
	// must not stall the gateways and the send path for long.
	ReadTimeout time.Duration
	// WriteTimeout bounds sending a command. Zero means
	// 300 * time.Millisecond.
	WriteTimeout time.Duration
	// PoolSize is the maximum number of connections. Zero means go-redis's
	// default, 10 per GOMAXPROCS.
	PoolSize int
	// MaxRetries is how often a command that failed on a network error is
	// retried. Zero means 1; a negative value means never.
	MaxRetries int
	// NoPing skips the PING in New, so a service can start while Redis is
	// down; go-redis connects on first use. False means New fails when
	// Redis does not answer.
	NoPing bool
}

// Defaults.
const (
	DefaultPrefix  = "danmaku:"
	DefaultTimeout = 300 * time.Millisecond
)

// ErrNoAddr is returned by Validate when Config.Addr is empty.
var ErrNoAddr = errors.New("redispresence: no address")

// Validate reports whether c is usable.
func (c Config) Validate() error {
	if c.Addr == "" {
		return ErrNoAddr
	}
	if c.DialTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 {
		return errors.New("redispresence: negative timeout")
	}
	if c.PoolSize < 0 {
		return errors.New("redispresence: negative pool size")
	}
	return nil
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	for _, d := range []*time.Duration{&c.DialTimeout, &c.ReadTimeout, &c.WriteTimeout} {
		if *d == 0 {
			*d = DefaultTimeout
		}
	}
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = 1
	case c.MaxRetries < 0:
		c.MaxRetries = -1
	}
	return c
}
