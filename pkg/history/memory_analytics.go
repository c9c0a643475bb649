package history

import (
	"context"
	"slices"
	"sort"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Memory keeps at most this many sessions and verdict keys (minute, rule,
// action) per room, dropping the oldest.
const (
	memSessionsPerRoom = 1000
	memVerdictsPerRoom = 50000
)

// PutSession inserts s or replaces the session with its ID.
func (m *Memory) PutSession(ctx context.Context, s Session) error {
	m.smu.Lock()
	defer m.smu.Unlock()
	list := m.sessions[s.Room]
	if i := slices.IndexFunc(list, func(x Session) bool { return x.ID == s.ID }); i >= 0 {
		list[i] = s
		return nil
	}
	list = append(list, s)
	if len(list) > memSessionsPerRoom {
		sortSessions(list)
		list = list[:memSessionsPerRoom]
	}
	m.sessions[s.Room] = list
	return nil
}

// sortSessions orders newest start first, ties by id.
func sortSessions(list []Session) {
	sort.Slice(list, func(i, j int) bool {
		if list[i].StartMs != list[j].StartMs {
			return list[i].StartMs > list[j].StartMs
		}
		return list[i].ID > list[j].ID
	})
}

// Sessions returns up to limit sessions of room, newest first.
func (m *Memory) Sessions(ctx context.Context, room string, limit int) ([]Session, error) {
	m.smu.Lock()
	defer m.smu.Unlock()
	out := slices.Clone(m.sessions[room])
	sortSessions(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Session returns session id of room.
func (m *Memory) Session(ctx context.Context, room, id string) (Session, bool, error) {
	m.smu.Lock()
	defer m.smu.Unlock()
	for _, s := range m.sessions[room] {
		if s.ID == id {
			return s, true, nil
		}
	}
	return Session{}, false, nil
}

// each calls f for every live message of room with fromMs <= TS < toMs.
func (m *Memory) each(room string, fromMs, toMs int64, f func(msg *protocol.Message)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[room]
	if r == nil {
		return
	}
	for i := range r.msgs {
		msg := &r.msgs[i]
		if !msg.Deleted && msg.TS >= fromMs && msg.TS < toMs {
			f(msg)
		}
	}
}

// Density counts messages per bucket.
func (m *Memory) Density(ctx context.Context, room string, fromMs, toMs, bucketMs int64) ([]int64, error) {
	if err := CheckDensity(fromMs, toMs, bucketMs); err != nil {
		return nil, err
	}
	out := make([]int64, (toMs-fromMs+bucketMs-1)/bucketMs)
	m.each(room, fromMs, toMs, func(msg *protocol.Message) { out[(msg.TS-fromMs)/bucketMs]++ })
	return out, nil
}

// Minutes counts messages and distinct senders per minute.
func (m *Memory) Minutes(ctx context.Context, room string, fromMs, toMs int64) ([]MinuteStat, error) {
	if toMs <= fromMs {
		return nil, ErrRange
	}
	type acc struct {
		n    int64
		uids map[string]struct{}
	}
	by := make(map[int64]*acc)
	m.each(room, fromMs, toMs, func(msg *protocol.Message) {
		k := msg.TS / 60000 * 60000
		a := by[k]
		if a == nil {
			a = &acc{uids: make(map[string]struct{})}
			by[k] = a
		}
		a.n++
		a.uids[msg.UID] = struct{}{}
	})
	out := make([]MinuteStat, 0, len(by))
	for k, a := range by {
		out = append(out, MinuteStat{Minute: k, Messages: a.n, Chatters: int64(len(a.uids))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Minute < out[j].Minute })
	return out, nil
}

// TopPhrases counts phrases per message.
func (m *Memory) TopPhrases(ctx context.Context, room string, fromMs, toMs int64, blocked []string, limit int) ([]PhraseCount, error) {
	if toMs <= fromMs {
		return nil, ErrRange
	}
	if limit <= 0 {
		limit = 20
	}
	f := NewPhraseFilter(blocked)
	counts := make(map[string]int64)
	m.each(room, fromMs, toMs, func(msg *protocol.Message) {
		for _, p := range Phrases(msg.Text, f) {
			counts[p]++
		}
	})
	return sortPhrases(counts, limit), nil
}

// AddVerdicts adds verdict counts.
func (m *Memory) AddVerdicts(ctx context.Context, counts []VerdictCount) error {
	m.smu.Lock()
	defer m.smu.Unlock()
	for _, c := range counts {
		byKey := m.verdicts[c.Room]
		if byKey == nil {
			byKey = make(map[verdictKey]int64)
			m.verdicts[c.Room] = byKey
		}
		k := verdictKey{minute: c.Minute / 60000 * 60000, action: c.Action, rule: c.Rule}
		if _, ok := byKey[k]; !ok && len(byKey) >= memVerdictsPerRoom {
			oldest := k
			for x := range byKey {
				if x.minute < oldest.minute {
					oldest = x
				}
			}
			delete(byKey, oldest)
		}
		byKey[k] += c.Count
	}
	return nil
}

// Verdicts sums a room's verdict counts per rule and action.
func (m *Memory) Verdicts(ctx context.Context, room string, fromMs, toMs int64) ([]VerdictCount, error) {
	m.smu.Lock()
	sum := make(map[[2]string]int64)
	for k, n := range m.verdicts[room] {
		if k.minute >= fromMs && k.minute < toMs {
			sum[[2]string{k.rule, k.action}] += n
		}
	}
	m.smu.Unlock()
	out := make([]VerdictCount, 0, len(sum))
	for k, n := range sum {
		out = append(out, VerdictCount{Rule: k[0], Action: k[1], Count: n})
	}
	SortVerdicts(out)
	return out, nil
}
