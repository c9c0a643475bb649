// Package route is the rule a room-affine load balancer sends viewers to
// gateways by (docs/deployment.md, "Room affinity"):
// deploy/nginx/room-route.js applies it in nginx, the bench's router
// here; deploy's TestRoomRouteMatchesTheBus checks that both agree, and
// TestNginxRoomRouting that nginx sends viewers where Key and Ring say.
package route

import (
	"cmp"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"strconv"
	"strings"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

// MaxSlots bounds the slots of one hot room.
const MaxSlots = 64

// HotSlots is how many slots of its own a room of online viewers gets: 0
// (it goes by its partition) up to perSlot viewers, else
// ceil(online / perSlot), at most MaxSlots. perSlot ≤ 0 turns hot rooms
// off.
func HotSlots(online, perSlot int) int {
	if perSlot <= 0 || online <= perSlot {
		return 0
	}
	return min(MaxSlots, (online+perSlot-1)/perSlot)
}

// Key is the routing key of a viewer of room, which the load balancer
// hashes consistently onto its gateways: "room:R:slot" for a hot room (hot
// slots of its own), else "partition:slot", the room's dispatch partition
// of partitions and one of slots slots. draw is a random number: the slot
// is draw modulo the slots.
func Key(room string, partitions, slots, hot int, draw uint32) string {
	if hot > 0 {
		return "room:" + room + ":" + strconv.FormatUint(uint64(draw%uint32(hot)), 10)
	}
	return strconv.Itoa(bus.KeyPartition(room, max(partitions, 1))) + ":" + strconv.FormatUint(uint64(draw%uint32(max(slots, 1))), 10)
}

// Ring is nginx's consistent hash (`hash $key consistent`,
// ngx_http_upstream_hash_module.c): each server of weight 1 has 160 points
// on a ring of CRC32 values, crc32(HOST "\x00" PORT PREV) with PREV the
// server's previous point (little-endian, 0 first); a key goes to the
// server of the first point at or after crc32(key), wrapping. A server is
// hashed as written in the upstream block ("gateway-1:8090",
// "unix:/run/gw.sock"), not by the addresses it resolves to; a name that
// resolves to several addresses gives them all the same points, and nginx
// takes turns among them. The bench's router places viewers with it, so a
// hot room's slots collide on gateways as they do behind nginx; deploy's
// TestNginxRoomRouting checks it against nginx.
type Ring struct {
	points []ringPoint // by hash
}

type ringPoint struct {
	hash   uint32
	server int
}

// NewRing returns the ring of servers, as an upstream block names them
// ("host:port", "host", "unix:path"), in its order.
func NewRing(servers []string) *Ring {
	r := &Ring{}
	for i, srv := range servers {
		host, port := hostPort(srv)
		base := crc32.Update(0, crc32.IEEETable, []byte(host+"\x00"+port))
		var prev [4]byte
		for range 160 {
			h := crc32.Update(base, crc32.IEEETable, prev[:])
			r.points = append(r.points, ringPoint{h, i})
			binary.LittleEndian.PutUint32(prev[:], h)
		}
	}
	// nginx sorts by hash and drops repeated hashes (the first kept).
	slices.SortStableFunc(r.points, func(a, b ringPoint) int { return cmp.Compare(a.hash, b.hash) })
	r.points = slices.CompactFunc(r.points, func(a, b ringPoint) bool { return a.hash == b.hash })
	return r
}

// hostPort splits a server as nginx does for its points: "unix:path" is
// the path and no port; else the port is the digits after the last colon,
// when all that follows it is digits ("[::1]" has none).
func hostPort(srv string) (host, port string) {
	if len(srv) >= 5 && strings.EqualFold(srv[:5], "unix:") {
		return srv[5:], ""
	}
	i := len(srv)
	for i > 0 && srv[i-1] >= '0' && srv[i-1] <= '9' {
		i--
	}
	if i > 0 && srv[i-1] == ':' {
		return srv[:i-1], srv[i:]
	}
	return srv, ""
}

// Get returns the index of key's server.
func (r *Ring) Get(key string) int {
	h := crc32.ChecksumIEEE([]byte(key))
	i, _ := slices.BinarySearchFunc(r.points, h, func(p ringPoint, h uint32) int { return cmp.Compare(p.hash, h) })
	return r.points[i%len(r.points)].server
}
