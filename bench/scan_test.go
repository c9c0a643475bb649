package bench

import (
	"testing"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

func TestEachMessage(t *testing.T) {
	msgs := []protocol.Message{
		{Seq: 7, UID: "u", Name: `"seq":9`, Text: benchText(1234567890, 1), TS: 5},
		{Seq: 8, UID: "u", Name: "n", Text: `hello "seq":99 "text":"b:1`, TS: 6},
		{Seq: 9, ID: "x", UID: "u", Name: "n", Text: benchText(42, 3), TS: 7, Kind: protocol.KindSystem},
	}
	for _, frame := range [][]byte{protocol.EncodeBatch("r", msgs), protocol.EncodeHistory("r", msgs, true)} {
		var seqs []uint64
		var sent []int64
		eachMessage(frame, func(seq uint64, ns int64) { seqs = append(seqs, seq); sent = append(sent, ns) })
		if len(seqs) != 3 || seqs[0] != 7 || seqs[1] != 8 || seqs[2] != 9 {
			t.Fatalf("seqs %v in %s", seqs, frame)
		}
		if sent[0] != 1234567890 || sent[1] != 0 || sent[2] != 42 {
			t.Fatalf("sent %v in %s", sent, frame)
		}
		if op := string(frameOp(frame)); op != protocol.OpBatch && op != protocol.OpHistory {
			t.Fatalf("op %q", op)
		}
	}
	seq, ok := uintField(protocol.Encode(protocol.Joined{Op: protocol.OpJoined, Room: "r", Seq: 41, Online: 3}), keySeq)
	if !ok || seq != 41 {
		t.Fatalf("joined seq %d %v", seq, ok)
	}
}
