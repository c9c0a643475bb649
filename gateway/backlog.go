package gateway

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setBacklog sets the listen queue length of every listening TCP socket of
// this process bound to port to n. gnet listens with the kernel's maximum
// (net.core.somaxconn) and accepts a whole queue before OnOpen can refuse
// anything (without SO_REUSEPORT), so the queue length is part of the
// process's descriptor budget (Config.ListenBacklog). Calling listen(2)
// again on a listening socket only changes its queue length.
// It returns how many sockets it changed.
func setBacklog(port, n int) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	changed := 0
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || on != 1 {
			continue
		}
		if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_STREAM {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue
		}
		var p int
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			p = a.Port
		case *unix.SockaddrInet6:
			p = a.Port
		default:
			continue
		}
		if p == port && unix.Listen(fd, n) == nil {
			changed++
		}
	}
	return changed
}
