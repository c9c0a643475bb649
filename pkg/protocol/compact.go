package protocol

import (
	stdjson "encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Compact batches (SubprotocolCompact; docs/protocol.md, "Compact
// batches"): a batch whose messages are arrays instead of objects, with
// what every message of the batch repeats said once:
//
//	{"op":"batch","room":"demo","seq":1043,"ts":1733490000123,"m":[[0,0,"233333","u17"],[1,12,"哈哈","u18","Bob"]]}
//
// "seq" and "ts" are the first message's. Each message is
// [seq step, ts offset, text, uid] followed by, only when needed, name and
// an object of the optional fields:
//   - seq step: the message's seq minus the previous message's (the first:
//     minus "seq", so 0);
//   - ts offset: the message's ts minus "ts" (may be negative);
//   - name: absent when it equals uid (nothing follows), null when it
//     equals uid and the object follows;
//   - the object: "id", "kind", "role", "color", "mode", "size",
//     "deleted", each only when set (as in the plain message).
//
// A thinned batch has "from"/"to" as a plain one; an empty one has no "m",
// "seq" or "ts" and is sent plain.

// compactExtra holds a message's optional fields in a compact batch.
type compactExtra struct {
	ID      string `json:"id,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Role    string `json:"role,omitempty"`
	Color   string `json:"color,omitempty"`
	Mode    string `json:"mode,omitempty"`
	Size    string `json:"size,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
}

// EncodeCompact encodes a batch of room in the compact form: msgs, seq
// strictly increasing, cover exactly their seqs, or from..to when to is
// not 0 (a thinned batch, as EncodeThinned). With no messages it returns
// the plain encoding (a compact client reads both).
func EncodeCompact(room string, from, to uint64, msgs []Message) []byte {
	if len(msgs) == 0 {
		return EncodeThinned(room, from, to, msgs)
	}
	b := make([]byte, 0, 64+len(msgs)*48)
	b = append(b, `{"op":"batch","room":`...)
	b = appendJSONString(b, room)
	if to != 0 {
		b = append(b, `,"from":`...)
		b = strconv.AppendUint(b, from, 10)
		b = append(b, `,"to":`...)
		b = strconv.AppendUint(b, to, 10)
	}
	seq0, ts0 := msgs[0].Seq, msgs[0].TS
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, seq0, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts0, 10)
	b = append(b, `,"m":[`...)
	prev := seq0
	for i := range msgs {
		m := &msgs[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendUint(b, m.Seq-prev, 10)
		prev = m.Seq
		b = append(b, ',')
		b = strconv.AppendInt(b, m.TS-ts0, 10)
		b = append(b, ',')
		b = appendJSONString(b, m.Text)
		b = append(b, ',')
		b = appendJSONString(b, m.UID)
		extra := m.ID != "" || m.Kind != "" || m.Role != "" || m.Color != "" || m.Mode != "" || m.Size != "" || m.Deleted
		switch {
		case m.Name != m.UID:
			b = append(b, ',')
			b = appendJSONString(b, m.Name)
		case extra:
			b = append(b, ",null"...)
		}
		if extra {
			b = append(b, ',')
			x, err := json.Marshal(compactExtra{ID: m.ID, Kind: m.Kind, Role: m.Role, Color: m.Color, Mode: m.Mode, Size: m.Size, Deleted: m.Deleted})
			if err != nil {
				x = []byte("{}") // plain strings and a bool: cannot fail
			}
			b = append(b, x...)
		}
		b = append(b, ']')
	}
	return append(b, "]}"...)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, everything else (UTF-8) as it is, invalid
// UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || n != 1 {
				i += n
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, "\ufffd"...)
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// expandCompact turns the compact messages of f (f.M) into f.Msgs.
func expandCompact(f *ServerFrame) error {
	msgs := make([]Message, 0, len(f.M))
	seq := f.Seq
	for i, raw := range f.M {
		var el []stdjson.RawMessage
		if err := stdjson.Unmarshal(raw, &el); err != nil {
			return fmt.Errorf("protocol: compact message %d: %w", i, err)
		}
		if len(el) < 4 || len(el) > 6 {
			return fmt.Errorf("protocol: compact message %d has %d fields, want 4 to 6", i, len(el))
		}
		var step uint64
		var dts int64
		var m Message
		if err := errors.Join(stdjson.Unmarshal(el[0], &step), stdjson.Unmarshal(el[1], &dts),
			stdjson.Unmarshal(el[2], &m.Text), stdjson.Unmarshal(el[3], &m.UID)); err != nil {
			return fmt.Errorf("protocol: compact message %d: %w", i, err)
		}
		seq += step
		m.Seq, m.TS, m.Name = seq, f.TS+dts, m.UID
		if len(el) > 4 && string(el[4]) != "null" {
			if err := stdjson.Unmarshal(el[4], &m.Name); err != nil {
				return fmt.Errorf("protocol: compact message %d name: %w", i, err)
			}
		}
		if len(el) > 5 {
			var x compactExtra
			if err := stdjson.Unmarshal(el[5], &x); err != nil {
				return fmt.Errorf("protocol: compact message %d fields: %w", i, err)
			}
			m.ID, m.Kind, m.Role, m.Color, m.Mode, m.Size, m.Deleted = x.ID, x.Kind, x.Role, x.Color, x.Mode, x.Size, x.Deleted
		}
		msgs = append(msgs, m)
	}
	f.Msgs, f.M, f.Seq, f.TS = msgs, nil, 0, 0
	return nil
}
