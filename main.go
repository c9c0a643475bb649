// Command danmaku runs the danmaku live-comment system: by default
// everything in one process on embedded backends (danmaku all), or one
// stage per process (gateway, logic, dispatch) on Kafka, ClickHouse and
// Redis. `danmaku token` prints a signed token. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "danmaku:", err)
		os.Exit(1)
	}
}
