package bench

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

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
	// The compact form (viewers with --compact) reads the same, thinned
	// or not, whatever the texts and names hold.
	tricky := append(msgs, protocol.Message{Seq: 12, UID: "u2", Name: `a\",[{"}]`, Text: `x\`, TS: 3, Role: "mod", Color: "#ffffff"},
		protocol.Message{Seq: 13, UID: "u3", Name: "u3", Text: benchText(77, 4), TS: 9})
	for _, frame := range [][]byte{protocol.EncodeCompact("r", 0, 0, tricky[:3]), protocol.EncodeCompact("r", 5, 14, tricky)} {
		var seqs []uint64
		var sent []int64
		eachMessage(frame, func(seq uint64, ns int64) { seqs = append(seqs, seq); sent = append(sent, ns) })
		want, wantSent := []uint64{7, 8, 9, 12, 13}, []int64{1234567890, 0, 42, 0, 77}
		if !bytes.Contains(frame, []byte(`"to":14`)) {
			want, wantSent = want[:3], wantSent[:3]
		} else if from, to, ok := batchMarks(frame); !ok || from != 5 || to != 14 {
			t.Fatalf("marks %d..%d %v in %s", from, to, ok, frame)
		}
		if fmt.Sprint(seqs) != fmt.Sprint(want) || fmt.Sprint(sent) != fmt.Sprint(wantSent) {
			t.Fatalf("seqs %v sent %v in %s; want %v %v", seqs, sent, frame, want, wantSent)
		}
	}
	seq, ok := uintField(protocol.Encode(protocol.Joined{Op: protocol.OpJoined, Room: "r", Seq: 41, Online: 3}), keySeq)
	if !ok || seq != 41 {
		t.Fatalf("joined seq %d %v", seq, ok)
	}
}

// BenchmarkEachMessage scans a 30-message batch frame, the size a gateway
// sends at 1000 msg/s.
func BenchmarkEachMessage(b *testing.B) {
	msgs := make([]protocol.Message, 30)
	for i := range msgs {
		msgs[i] = protocol.Message{Seq: uint64(1000 + i), UID: "user-1234", Name: "viewer name", Text: benchText(1790000000000000000, uint64(i)), TS: 1790000000000}
	}
	frame := protocol.EncodeBatch("bench-r0", msgs)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		eachMessage(frame, func(uint64, int64) { n++ })
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
}

func TestIndexAnchored(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte(`"seqtx:{},01`)
	for _, key := range [][]byte{keySeq, keyAnyText} {
		for range 20000 {
			p := make([]byte, rng.IntN(40))
			for i := range p {
				p[i] = alphabet[rng.IntN(len(alphabet))]
			}
			if rng.IntN(3) == 0 {
				at := rng.IntN(len(p) + 1)
				p = append(p[:at:at], append(append([]byte(nil), key...), p[at:]...)...)
			}
			if got, want := indexAnchored(p, key, 3), bytes.Index(p, key); got != want {
				t.Fatalf("indexAnchored(%q, %q) = %d, want %d", p, key, got, want)
			}
		}
	}
}

func TestChatText(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	short, cjk := 0, 0
	const n = 2000
	for range n {
		s := chatText(rng)
		r := []rune(s)
		if len(r) == 0 || len(r) > chatMaxRunes || !utf8.ValidString(s) {
			t.Fatalf("bad text %q (%d runes)", s, len(r))
		}
		if len(r) < 8 {
			short++
		}
		for _, c := range r {
			if c >= 0x3040 && c <= 0x9fff {
				cjk++
				break
			}
		}
	}
	if short < n/3 || short > n*4/5 || cjk < n/3 {
		t.Fatalf("%d of %d under 8 runes, %d with CJK: not chat-like", short, n, cjk)
	}
}

func TestBatchMarks(t *testing.T) {
	for _, tc := range []struct {
		in       string
		from, to uint64
		ok       bool
	}{
		{`{"op":"batch","room":"r","from":5,"to":9,"msgs":[{"seq":6,"uid":"u","name":"n","text":"\"to\":3"}]}`, 5, 9, true},
		{`{"op":"batch","room":"r","msgs":[{"seq":6,"uid":"u","name":"n","text":"x\",\"to\":3"}]}`, 0, 0, false},
		{`{"op":"batch","room":"r","from":2,"to":4,"msgs":[]}`, 2, 4, true},
	} {
		from, to, ok := batchMarks([]byte(tc.in))
		if from != tc.from || to != tc.to || ok != tc.ok {
			t.Errorf("%s: %d %d %v", tc.in, from, to, ok)
		}
	}
}
