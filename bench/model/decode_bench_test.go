package model

import (
	"strconv"
	"testing"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// BenchmarkDecodeBatch measures what a gateway pays to decode a dispatch
// batch of a room it serves (bus.Unmarshal of the frame, once per batch
// per gateway): costs.json decode_byte_ns is its ns/byte.
func BenchmarkDecodeBatch(b *testing.B) {
	msgs := make([]protocol.Message, 20)
	for i := range msgs {
		msgs[i] = protocol.Message{Seq: uint64(1000 + i), ID: "m" + strconv.Itoa(i), UID: "u" + strconv.Itoa(i*7919),
			Name: "viewer" + strconv.Itoa(i), Text: "哈哈哈 233333 awsl 这个操作太秀了", TS: 1764130000000 + int64(i)}
	}
	frame := protocol.EncodeBatch("room-1", msgs)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		var v protocol.Batch
		if err := bus.Unmarshal(frame, &v); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(frame)), "ns/byte")
}
