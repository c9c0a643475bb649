package historytest

import (
	"reflect"
	"testing"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// m0 is a whole minute in the last hour; minute is one in ms.
var m0 = baseMs/60000*60000 + 60000

const minute = int64(60000)

// appendTexts stores texts in room r, sent by "u" a second apart from m0,
// with seqs from 1.
func appendTexts(t *testing.T, st history.Store, r string, texts ...string) {
	t.Helper()
	var ms []protocol.Message
	for i, text := range texts {
		ms = append(ms, protocol.Message{Room: r, Seq: uint64(i + 1), UID: "u", Text: text, TS: m0 + int64(i)*1000})
	}
	mustAppend(t, st, ms)
}

// The subtests below are for stores that implement history.Sessions,
// history.Analytics and history.VerdictLog; others skip them.

// testSessions is the subtest Sessions.
func testSessions(t *testing.T, st history.Store) {
	s := as[history.Sessions](t, st)
	r, other := room("sess"), room("sess-other")
	ctx := ctxT(t)
	put := func(x history.Session) {
		t.Helper()
		if err := s.PutSession(ctx, x); err != nil {
			t.Fatalf("PutSession: %v", err)
		}
	}
	put(history.Session{Room: r, ID: "s1", StartMs: m0, By: "streamer"})
	put(history.Session{Room: r, ID: "s2", StartMs: m0 + 2*minute, Title: "second"})
	put(history.Session{Room: other, ID: "s9", StartMs: m0})
	put(history.Session{Room: r, ID: "s1", StartMs: m0, EndMs: m0 + minute, Title: "first", By: "streamer"})
	s1 := history.Session{Room: r, ID: "s1", StartMs: m0, EndMs: m0 + minute, Title: "first", By: "streamer"}
	s2 := history.Session{Room: r, ID: "s2", StartMs: m0 + 2*minute, Title: "second"}
	got, err := s.Sessions(ctx, r, 0)
	if err != nil || !reflect.DeepEqual(got, []history.Session{s2, s1}) {
		t.Fatalf("Sessions = %+v, %v; want [%+v %+v]", got, err, s2, s1)
	}
	if got, err := s.Sessions(ctx, r, 1); err != nil || !reflect.DeepEqual(got, []history.Session{s2}) {
		t.Errorf("Sessions(limit 1) = %+v, %v; want [s2]", got, err)
	}
	if x, ok, err := s.Session(ctx, r, "s1"); err != nil || !ok || x != s1 {
		t.Errorf("Session(s1) = %+v, %v, %v; want %+v (the ended version)", x, ok, err, s1)
	}
	if _, ok, err := s.Session(ctx, r, "s9"); err != nil || ok {
		t.Errorf("Session of another room's id = %v, %v; want not found", ok, err)
	}
	if got, err := s.Sessions(ctx, room("sess-none"), 10); err != nil || len(got) != 0 {
		t.Errorf("Sessions of a room without any = %v, %v", got, err)
	}
}

// testAnalytics is the subtest Analytics.
func testAnalytics(t *testing.T, st history.Store) {
	a := as[history.Analytics](t, st)
	d := as[history.Deleter](t, st)
	r := room("ana")
	ctx := ctxT(t)
	seed := []struct {
		at   int64
		uid  string
		text string
	}{
		{m0 + 1000, "a", "哈哈哈哈 gg"},
		{m0 + 10000, "b", "GG 666 😀"},
		{m0 + 20000, "p", "purged 打得好"}, // purged below
		{m0 + 40000, "a", "打得好 😀😀"},
		{m0 + minute + 5000, "c", "垃圾 打得好"},
		{m0 + minute + 20000, "e", "deleted gg gg"}, // deleted below
		{m0 + minute + 50000, "b", "the best gg"},
		{m0 + 3*minute + 1000, "d", "hello"}, // deleted below
	}
	var ms []protocol.Message
	for i, x := range seed {
		ms = append(ms, protocol.Message{Room: r, Seq: uint64(i + 1), ID: "a" + x.uid, UID: x.uid, Text: x.text, TS: x.at})
	}
	mustAppend(t, st, ms)
	// Another room's messages in the same minutes count for nothing here.
	mustAppend(t, st, []protocol.Message{{Room: room("ana-other"), Seq: 1, UID: "a", Text: "gg", TS: m0 + 1000}})
	if _, err := d.Delete(ctx, r, []uint64{6, 8}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := d.Purge(ctx, r, "p", m0, m0+60*minute); err != nil {
		t.Fatalf("Purge: %v", err)
	}

	dens, err := a.Density(ctx, r, m0, m0+4*minute, 30000)
	if want := []int64{2, 1, 1, 1, 0, 0, 0, 0}; err != nil || !reflect.DeepEqual(dens, want) {
		t.Errorf("Density(30 s) = %v, %v; want %v", dens, err, want)
	}
	dens, err = a.Density(ctx, r, m0+10000, m0+minute+10000, 25000)
	if want := []int64{1, 1, 1}; err != nil || !reflect.DeepEqual(dens, want) {
		t.Errorf("Density(offset, 25 s) = %v, %v; want %v", dens, err, want)
	}
	if _, err := a.Density(ctx, r, m0, m0+minute, 0); err == nil {
		t.Errorf("Density with bucket 0: no error")
	}
	if _, err := a.Density(ctx, r, m0, m0+minute, 1); err == nil {
		t.Errorf("Density with 60000 buckets: no error (max %d)", history.MaxBuckets)
	}

	mins, err := a.Minutes(ctx, r, m0-minute, m0+10*minute)
	if want := []history.MinuteStat{{Minute: m0, Messages: 3, Chatters: 2}, {Minute: m0 + minute, Messages: 2, Chatters: 2}}; err != nil || !reflect.DeepEqual(mins, want) {
		t.Errorf("Minutes = %+v, %v; want %+v", mins, err, want)
	}
	if mins, err := a.Minutes(ctx, r, m0+minute, m0+minute+30000); err != nil || !reflect.DeepEqual(mins, []history.MinuteStat{{Minute: m0 + minute, Messages: 1, Chatters: 1}}) {
		t.Errorf("Minutes(half a minute) = %+v, %v", mins, err)
	}

	top, err := a.TopPhrases(ctx, r, m0, m0+10*minute, nil, 0)
	want := []history.PhraseCount{pc("gg", 3), pc("得好", 2), pc("打得", 2), pc("😀", 2), pc("666", 1), pc("best", 1), pc("哈哈", 1), pc("垃圾", 1)}
	if err != nil || !reflect.DeepEqual(top, want) {
		t.Errorf("TopPhrases = %v, %v; want %v", top, err, want)
	}
	top, err = a.TopPhrases(ctx, r, m0, m0+10*minute, []string{"垃圾", "GG", "打得好", " "}, 3)
	want = []history.PhraseCount{pc("😀", 2), pc("666", 1), pc("best", 1)}
	if err != nil || !reflect.DeepEqual(top, want) {
		t.Errorf("TopPhrases(blocked, limit 3) = %v, %v; want %v", top, err, want)
	}
	top, err = a.TopPhrases(ctx, r, m0+minute, m0+2*minute, nil, 10)
	want = []history.PhraseCount{pc("best", 1), pc("gg", 1), pc("垃圾", 1), pc("得好", 1), pc("打得", 1)}
	if err != nil || !reflect.DeepEqual(top, want) {
		t.Errorf("TopPhrases(second minute) = %v, %v; want %v", top, err, want)
	}
}

// testPhraseTokens is the subtest PhraseTokens.
//
// Accented and combining Latin letters stay in their word, skin
// tones and joined emoji stay with their emoji, and no phrase
// overlaps a blocked word (垃圾主播 gives 主播, not 圾主).
func testPhraseTokens(t *testing.T, st history.Store) {
	a := as[history.Analytics](t, st)
	r := room("tokens")
	appendTexts(t, st, r, "Café au lait, CAFÉ!", "cafe\u0301 naïve", "👍🏽👍🏽 👍 gg",
		"垃圾主播 主播好", "👨\u200d👩\u200d👧 ☃\ufe0f", "NAÏVE café")
	top, err := a.TopPhrases(ctxT(t), r, m0, m0+minute, []string{"垃圾"}, 0)
	want := []history.PhraseCount{pc("café", 2), pc("naïve", 2), pc("au", 1), pc("cafe\u0301", 1), pc("gg", 1),
		pc("lait", 1), pc("☃\ufe0f", 1), pc("主播", 1), pc("播好", 1), pc("👍", 1), pc("👍🏽", 1), pc("👨\u200d👩\u200d👧", 1)}
	if err != nil || !reflect.DeepEqual(top, want) {
		t.Errorf("TopPhrases = %v, %v;\nwant %v", top, err, want)
	}
}

// testPhraseCaseFoldingBlocksEveryCase is the subtest PhraseCaseFoldingBlocksEveryCase.
//
// Both stores fold case as ClickHouse 18.16's lowerUTF8 does: "İ"
// and "ẞ" (whose lower case has another UTF-8 length) stay as they
// are, so "İstanbul" and "istanbul", "straẞe" and "straße" are
// different phrases in each. A blocked word still matches them:
// "ibne" (or "İBNE") blocks "İBNE" and the phrase "İb" inside it.
func testPhraseCaseFoldingBlocksEveryCase(t *testing.T, st history.Store) {
	a := as[history.Analytics](t, st)
	r := room("fold")
	appendTexts(t, st, r, "İBNE İSTANBUL", "İBNE", "istanbul güzel", "STRAẞE straße", "İB ok", "\u212aELVIN Ⓐbc")
	want := []history.PhraseCount{pc("bc", 1), pc("güzel", 1), pc("istanbul", 1), pc("ok", 1), pc("straße", 1),
		pc("straẞe", 1), pc("İstanbul", 1), pc("\u212aelvin", 1)}
	for _, blocked := range [][]string{{"ibne"}, {"İBNE"}} {
		top, err := a.TopPhrases(ctxT(t), r, m0, m0+minute, blocked, 0)
		if err != nil || !reflect.DeepEqual(top, want) {
			t.Errorf("TopPhrases(blocked %q) = %v, %v;\nwant %v", blocked, top, err, want)
		}
	}
	// The Kelvin sign stays; "kelvin" blocked still blocks it.
	top, err := a.TopPhrases(ctxT(t), r, m0+5000, m0+6000, []string{"kelvin"}, 0)
	if want := []history.PhraseCount{pc("bc", 1)}; err != nil || !reflect.DeepEqual(top, want) {
		t.Errorf("TopPhrases(blocked kelvin) = %v, %v; want %v", top, err, want)
	}
}

// testVerdicts is the subtest Verdicts.
func testVerdicts(t *testing.T, st history.Store) {
	v := as[history.VerdictLog](t, st)
	r, other := room("verd"), room("verd-other")
	ctx := ctxT(t)
	if err := v.AddVerdicts(ctx, []history.VerdictCount{
		{Room: r, Minute: m0 + 5000, Action: "reject", Rule: "keyword:room:x", Count: 2},
		{Room: r, Minute: m0 + minute, Action: "hold", Rule: "spam", Count: 4},
		{Room: other, Minute: m0, Action: "reject", Rule: "keyword:room:x", Count: 7},
	}); err != nil {
		t.Fatalf("AddVerdicts: %v", err)
	}
	if err := v.AddVerdicts(ctx, []history.VerdictCount{
		{Room: r, Minute: m0, Action: "reject", Rule: "keyword:room:x", Count: 1},
		{Room: r, Minute: m0 + 3*minute, Action: "mask", Rule: "keyword:global:y", Count: 1},
	}); err != nil {
		t.Fatalf("AddVerdicts: %v", err)
	}
	got, err := v.Verdicts(ctx, r, m0, m0+3*minute)
	want := []history.VerdictCount{{Action: "hold", Rule: "spam", Count: 4}, {Action: "reject", Rule: "keyword:room:x", Count: 3}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Verdicts = %+v, %v; want %+v", got, err, want)
	}
	got, err = v.Verdicts(ctx, r, m0+minute, m0+4*minute)
	want = []history.VerdictCount{{Action: "hold", Rule: "spam", Count: 4}, {Action: "mask", Rule: "keyword:global:y", Count: 1}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Verdicts(later) = %+v, %v; want %+v", got, err, want)
	}
}

func pc(p string, n int64) history.PhraseCount { return history.PhraseCount{Phrase: p, Count: n} }
