// Package route is the rule a room-affine load balancer sends viewers to
// gateways by (docs/deployment.md, "Room affinity"):
// deploy/nginx/room-route.js applies it in nginx, the bench's router
// here; deploy's TestRoomRouteMatchesTheBus checks that both agree.
package route

import (
	"strconv"

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
