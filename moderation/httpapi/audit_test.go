package httpapi

import (
	"context"
	"strconv"
	"testing"
)

func TestMemoryAudit(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		records int
		limit   int
		want    []string // Details, newest first
	}{
		{"empty", 0, 10, []string{}},
		{"fewer than limit", 2, 10, []string{"1", "0"}},
		{"limit", 3, 2, []string{"2", "1"}},
		{"ring wrapped", 7, 0, []string{"6", "5", "4", "3"}},
		{"ring wrapped with limit", 9, 3, []string{"8", "7", "6"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemoryAudit(4, 0)
			for i := range tc.records {
				_ = m.Record(ctx, AuditEntry{Room: "r", Action: AuditDelete, Details: strconv.Itoa(i)})
			}
			got, err := m.List(ctx, "r", tc.limit)
			if err != nil || len(got) != len(tc.want) {
				t.Fatalf("got %+v, %v", got, err)
			}
			for i := range got {
				if got[i].Details != tc.want[i] {
					t.Fatalf("entry %d = %q, want %q", i, got[i].Details, tc.want[i])
				}
			}
		})
	}
	t.Run("rooms bounded, least recently written dropped", func(t *testing.T) {
		m := NewMemoryAudit(4, 2)
		for _, room := range []string{"a", "b", "a", "c"} {
			_ = m.Record(ctx, AuditEntry{Room: room})
		}
		for room, want := range map[string]int{"a": 2, "b": 0, "c": 1} {
			if got, _ := m.List(ctx, room, 0); len(got) != want {
				t.Errorf("room %s: %d entries, want %d", room, len(got), want)
			}
		}
	})
}
