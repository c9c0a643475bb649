package logic

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
)

// TestVerdictCounts: every verdict but a plain accept is counted per room,
// action and rule in Config.Verdicts; trusted sends and other rooms are
// not counted in the room; the last counts are written when Run ends.
func TestVerdictCounts(t *testing.T) {
	b := bus.NewMemory(bus.MemoryConfig{})
	eng, _ := moderation.New(moderation.Config{})
	if err := eng.SetRoomKeywords("vr", moderation.KeywordList{Words: []string{"badword"}, Action: moderation.ActionBlock}); err != nil {
		t.Fatal(err)
	}
	if err := eng.SetRoomKeywords("vm", moderation.KeywordList{Words: []string{"badword"}, Action: moderation.ActionMask}); err != nil {
		t.Fatal(err)
	}
	store := history.NewMemory(history.MemoryConfig{})
	l, err := New(Config{Bus: b, Moderation: eng, Verdicts: store, VerdictFlush: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	replies, err := b.Consumer(bus.StreamReply, bus.ConsumerOptions{Key: "gw1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	ingest := b.Publisher(bus.StreamIngest)
	long := string(make([]byte, 101))
	sends := []bus.Ingest{
		{Room: "vr", ID: "1", UID: "u1", Text: "a badword here"},
		{Room: "vr", ID: "2", UID: "u2", Text: "BADWORD again"},
		{Room: "vr", ID: "3", UID: "u3", Text: "fine"},
		{Room: "vr", ID: "4", UID: "u4", Text: long},
		{Room: "vr", ID: "5", UID: "svc", Role: "service", Trusted: true, Text: "badword from a service"},
		{Room: "vm", ID: "1", UID: "u1", Text: "masked badword"},
	}
	for i, in := range sends {
		in.Gateway, in.Conn = "gw1", uint64(i+1)
		if in.Role == "" {
			in.Role = "viewer"
		}
		v, _ := bus.Marshal(in)
		if err := ingest.Publish(ctx, bus.Record{Key: in.Room, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
	defer fcancel()
	for n := 0; n < len(sends); {
		recs, err := replies.Fetch(fctx)
		if err != nil {
			t.Fatalf("replies: %d of %d: %v", n, len(sends), err)
		}
		n += len(recs)
	}
	// Nothing is written before a flush (VerdictFlush is an hour) ...
	now := time.Now().UnixMilli()
	if got, _ := store.Verdicts(context.Background(), "vr", 0, now+120000); len(got) != 0 {
		t.Fatalf("verdicts written before a flush: %+v", got)
	}
	// ... and everything when Run ends.
	cancel()
	<-done
	got, err := store.Verdicts(context.Background(), "vr", 0, now+120000)
	want := []history.VerdictCount{
		{Action: "reject", Rule: "keyword:room:badword", Count: 2},
		{Action: "reject", Rule: "too_long", Count: 1},
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("room vr verdicts = %+v, %v; want %+v", got, err, want)
	}
	got, err = store.Verdicts(context.Background(), "vm", 0, now+120000)
	want = []history.VerdictCount{{Action: "mask", Rule: "keyword:room:badword", Count: 1}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("room vm verdicts = %+v, %v; want %+v", got, err, want)
	}
}
