package moderation

import (
	"testing"
	"time"
)

func TestHeldQueue(t *testing.T) {
	q := NewHeldQueue(3, 2, time.Minute)
	var ids []uint64
	for i, text := range []string{"a", "b", "c", "d"} {
		h, ok := q.Add(Held{Room: "r", UID: "u", Text: text, Rule: RuleSpam, At: t0.Add(time.Duration(i) * time.Second)})
		if !ok || h.ID == 0 {
			t.Fatalf("Add %q = %+v %v", text, h, ok)
		}
		ids = append(ids, h.ID)
	}
	got := q.List("r", t0.Add(5*time.Second))
	if len(got) != 3 || got[0].Text != "b" || got[2].Text != "d" {
		t.Fatalf("List = %+v, want b c d (a pushed out)", got)
	}
	if h, ok := q.Take("r", ids[2]); !ok || h.Text != "c" {
		t.Fatalf("Take = %+v %v", h, ok)
	}
	if _, ok := q.Take("r", ids[2]); ok {
		t.Fatal("second Take of the same id succeeded")
	}
	if _, ok := q.Take("other", ids[3]); ok {
		t.Fatal("Take from the wrong room succeeded")
	}
	if got := q.List("r", t0.Add(time.Minute+2*time.Second)); len(got) != 1 || got[0].Text != "d" {
		t.Fatalf("after TTL: %+v, want only d", got)
	}
	if _, ok := q.Add(Held{Room: "r2", At: t0}); !ok {
		t.Fatal("second room refused")
	}
	if _, ok := q.Add(Held{Room: "r3", At: t0.Add(2 * time.Minute)}); !ok {
		t.Fatal("third room refused although the others expired")
	}
	if _, ok := q.Add(Held{Room: "r4", At: t0.Add(2 * time.Minute)}); !ok {
		t.Fatal("fourth room refused with one live room")
	}
	if _, ok := q.Add(Held{Room: "r5", At: t0.Add(2 * time.Minute)}); ok {
		t.Fatal("room cap not enforced")
	}
}
