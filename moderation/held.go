package moderation

import (
	"sync"
	"time"
)

// Held is a message waiting for a moderator's review.
type Held struct {
	// ID is assigned by HeldQueue.Add, unique within the queue.
	ID   uint64    `json:"id"`
	Room string    `json:"room"`
	UID  string    `json:"uid"`
	Name string    `json:"name,omitempty"`
	Text string    `json:"text"`
	Rule string    `json:"rule"` // the Verdict.Rule that held it
	At   time.Time `json:"at"`
	// Data is opaque to the queue: whatever the caller needs to publish the
	// message once approved (for example the encoded original message).
	Data []byte `json:"-"`
}

// HeldQueue is a bounded held-for-review queue per room. Entries leave it
// through Take (approve or reject), by expiring after the TTL, or by being
// pushed out, oldest first, when a room's queue is full. It is safe for
// concurrent use; the zero value is not usable, use NewHeldQueue.
type HeldQueue struct {
	mu      sync.Mutex
	max     int
	maxRoom int
	ttl     time.Duration
	next    uint64
	rooms   map[string][]Held // oldest first
}

// NewHeldQueue returns a queue holding at most perRoom messages per room
// (zero means 500) in at most maxRooms rooms (zero means 10,000), each for
// at most ttl (zero means 10 minutes).
func NewHeldQueue(perRoom, maxRooms int, ttl time.Duration) *HeldQueue {
	if perRoom <= 0 {
		perRoom = 500
	}
	if maxRooms <= 0 {
		maxRooms = 10_000
	}
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	return &HeldQueue{max: perRoom, maxRoom: maxRooms, ttl: ttl, rooms: make(map[string][]Held)}
}

// Add queues h and returns it with its ID. It reports false when the queue
// already tracks maxRooms other rooms.
func (q *HeldQueue) Add(h Held) (Held, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	list, ok := q.rooms[h.Room]
	if !ok && len(q.rooms) >= q.maxRoom {
		q.expireAll(h.At)
		if len(q.rooms) >= q.maxRoom {
			return h, false
		}
	}
	list = q.expire(list, h.At)
	if len(list) >= q.max {
		list = append(list[:0], list[len(list)-q.max+1:]...)
	}
	q.next++
	h.ID = q.next
	q.rooms[h.Room] = append(list, h)
	return h, true
}

// List returns the room's live held messages, oldest first.
func (q *HeldQueue) List(room string, now time.Time) []Held {
	q.mu.Lock()
	defer q.mu.Unlock()
	list := q.expire(q.rooms[room], now)
	q.store(room, list)
	return append([]Held(nil), list...)
}

// Take removes and returns the held message id of the room, to approve or
// reject it. It reports false when there is no such message.
func (q *HeldQueue) Take(room string, id uint64) (Held, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	list := q.rooms[room]
	for i, h := range list {
		if h.ID == id {
			list = append(list[:i], list[i+1:]...)
			q.store(room, list)
			return h, true
		}
	}
	return Held{}, false
}

// Len returns the number of held messages in the room.
func (q *HeldQueue) Len(room string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.rooms[room])
}

// expire drops entries older than the TTL. q.mu must be held.
func (q *HeldQueue) expire(list []Held, now time.Time) []Held {
	i := 0
	for i < len(list) && now.Sub(list[i].At) >= q.ttl {
		i++
	}
	if i == 0 {
		return list
	}
	clear(list[:i])
	return list[i:]
}

// expireAll expires every room. q.mu must be held.
func (q *HeldQueue) expireAll(now time.Time) {
	for room, list := range q.rooms {
		q.store(room, q.expire(list, now))
	}
}

// store keeps list as the room's queue, dropping empty rooms. q.mu must be held.
func (q *HeldQueue) store(room string, list []Held) {
	if len(list) == 0 {
		delete(q.rooms, room)
		return
	}
	q.rooms[room] = list
}
