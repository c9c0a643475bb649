// Package moderation is danmaku's moderation engine: it decides, for every
// message a viewer sends, whether it is accepted, masked, held for review
// or rejected, and why.
//
// # Use
//
//	e, err := moderation.New(moderation.Config{Global: moderation.KeywordList{Words: words}})
//	v := e.Check(moderation.Input{Room: room, UID: uid, Role: role, Text: text})
//	switch v.Action {
//	case moderation.Accept, moderation.Mask: // publish v.Text
//	case moderation.Hold:                    // queue v.Text for review
//	case moderation.Reject:                  // answer v.Code (and v.RetryAfter)
//	}
//
// Every Engine method is safe for concurrent use. Check does not allocate
// on its common paths; configuration changes (SetSettings,
// SetRoomKeywords, SetRoomRules, Ban...) take effect for the next Check.
//
// # Verdict order
//
// Check applies its rules in this order and stops at the first rejection:
//
//  1. ban: a global ban, then a room ban or timeout → CodeBanned, rule
//     "banned" (RetryAfter for timeouts);
//  2. length: more runes than Settings.MaxLength → CodeTooLong; empty,
//     blank or invalid UTF-8 text → CodeInvalid;
//  3. rate limit: a per-user token bucket per room, keyed by user id so a
//     reconnect does not refill it → CodeRateLimited with RetryAfter;
//     then slow mode → CodeSlowMode with RetryAfter;
//  4. links, under Settings.LinkPolicy → CodeBlocked, rule "link";
//  5. keywords (global list, then the room's) and regex rules (global, then
//     the room's): the most severe action wins — block (CodeBlocked, rule
//     "keyword:<scope>:<word>" or "regex:<scope>:<pattern>"), then hold,
//     then mask; masks of several rules combine;
//  6. duplicate (the same normalised text from the same user within
//     Settings.DuplicateWindowSec → CodeBlocked, rule "duplicate") and flood
//     (the same normalised text from Settings.FloodUsers distinct users
//     within Settings.FloodWindowSec → Hold or CodeBlocked, rule "flood");
//  7. spam score: Hold (rule "spam") when the score reaches
//     Settings.HoldThreshold.
//
// Moderators, streamers and service accounts skip 3, 4, 6 and 7, as on
// Twitch; bans, length, keywords and regex rules still apply to them.
//
// # Normalisation
//
// Keywords are matched against a normalised stream of the text, built per
// input rune and per word:
//
//   - width folding and NFKC (ｆｕｃｋ, 𝐟𝐮𝐜𝐤, ⓕⓤⓒⓚ → fuck), lower case;
//   - removal of zero-width and format characters (U+200B–U+200D, U+2060,
//     U+FEFF, soft hyphen, bidi controls), combining marks (F̶u̶c̶k̶) and
//     diacritics of alphabetic scripts (fück → fuck; kana keep theirs);
//   - look-alike letters from Cyrillic, Greek, Armenian and Latin small
//     capitals mapped to Latin (fuсk with a Cyrillic с → fuck);
//   - leetspeak inside words that contain a letter: 0→o 1→i 3→e 4→a 5→s
//     7→t @→a $→s, and ! or | between letters → i or l (sh1t, $h!t, a$$);
//     numbers alone stay numbers (2023, 666);
//   - separators inside a word are removed: any run of up to three
//     punctuation characters between letters (f.u.c.k, f_u_c_k, f-u-c-k),
//     white space and apostrophes only between single letters (f u c k,
//     f'u'c'k) so that whole words are never joined ("as sorted" stays two
//     words, "he'll" is not "hell"), and any short
//     separator between two CJK characters (傻 逼). The removal leaves a
//     "soft" word boundary, so "kick-ass" still has the word "ass". Every
//     other separator run becomes one space;
//   - runs of one repeated rune collapse to one (fuuuuck → fuck) while the
//     run length is kept; keywords are collapsed the same way and a match
//     needs each text run to be at least as long as the keyword's, so "ass"
//     matches "asssss" but not "as".
//
// Each stream position remembers the span of input runes it came from, so
// Mask replaces exactly the original characters ("oh f.u.c.k off" →
// "oh ******* off"). Normalize exposes the stream for tests and tooling.
//
// # Matching
//
// Each keyword list compiles into one Aho–Corasick automaton
// (internal/ac), so the cost of a check grows with the text, not with the
// list. A keyword matches on word boundaries: "ass" does not fire on
// "class", "assistant" or "passage", "hell" not on "hello" or "shell". An
// end of a keyword written in a script without spaces (Chinese, Japanese,
// Korean, Thai...) matches anywhere, so 傻逼 is found inside a sentence.
// A leading or trailing '*' lifts the boundary at that end ("*nazi*",
// "spam*"). Regex rules (Go RE2 syntax) run on the text as sent.
//
// Links are found in the normalised characters (before separator removal):
// a scheme ("https://"), "www.", or label.tld for common top-level
// domains; spelled-out dots ("example dot com", "example(dot)com",
// "example[.]com", "example . com", full-width and ideographic dots) count.
// Top-level domains that are also common words (to, me, in, be, ...) count
// only with a scheme, "www." or a path ("youtu.be/x").
//
// The spam score in [0,1] is the largest of: the share of capital letters
// (texts with at least 6 letters), twice the share of runes removed as
// repeats (texts with at least 6 runes), the share of symbols and emoji
// (texts with at least 4 runes), and 0.5 for a text with a link.
//
// # Memory
//
// Per-room state (token buckets, slow-mode times, recent texts, flood
// counters, room bans) lives in a sharded map of rooms, each with its own
// mutex. Check sweeps idle state every Config.SweepInterval: a user's state
// is dropped once it carries no information (bucket full, windows passed),
// rooms with no state and no configuration are dropped. Config.MaxRooms,
// Config.MaxUsersPerRoom and Config.MaxFloodTexts cap the maps.
package moderation
