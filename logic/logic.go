// Package logic is the decision stage of the pipeline: it consumes the
// ingest stream as a consumer group (partitioned by room, so one worker owns
// a room at a time), asks moderation for a verdict on every send, gives
// accepted messages the room's next seq, answers retries of an already
// accepted message id with the same ack, publishes accepted messages to the
// accepted stream and replies to the sender's gateway, and only then
// commits its ingest offsets.
//
// Ordering of one batch of ingest records:
//
//  1. claim the accepted partitions of new ingest partitions (claim.go);
//  2. decide every record (dedupe, moderation, tentative seq);
//  3. append the accepted messages to their accepted partitions under the
//     claim, retried until they land, and verify no other worker took a
//     partition over meanwhile;
//  4. adopt the seqs, remember accepted ids for dedupe (in memory and in
//     Config.Dedupe);
//  5. commit the ingest records;
//  6. publish held-message events and replies: acks of verified messages
//     always, rejects and held answers only when the commit succeeded
//     (otherwise the partition's next owner decides those records again,
//     and its answer is the only one).
//
// A crash anywhere before 5 redelivers the records: messages appended in
// 3 are then answered from dedupe (same seq), so nothing acknowledged is
// lost and nothing is broadcast twice. A worker that lost a partition
// mid-batch announces nothing about the partition's records (claim.go).
package logic

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Checker decides about one message. *moderation.Engine implements it.
type Checker interface {
	Check(in moderation.Input) moderation.Verdict
}

// DisplayChecker is the optional ability of a Checker to decide whether a
// message may use its display mode and size (*moderation.Engine has it).
// A Checker without it lets every mode and size through.
type DisplayChecker interface {
	CheckDisplay(in moderation.DisplayInput) moderation.Verdict
}

// SeqSource tells the highest seq a room reached before this worker owned
// it (history.LastSeqer implements it).
type SeqSource interface {
	LastSeq(ctx context.Context, room string) (uint64, error)
}

// Config configures a logic worker. Zero values take the documented
// defaults.
type Config struct {
	// Bus is read (ingest, control) and written (accepted, reply,
	// control). Required.
	Bus bus.Bus
	// Group is the ingest consumer group. Zero value means "logic".
	Group string
	// Moderation decides about each send. Required. When it is a
	// *moderation.Engine (as in every process) it also takes the
	// moderation events of the control stream (bans, settings, keyword
	// lists) and the rooms' persisted state (Rooms); any other Checker
	// (tests) decides alone.
	Moderation Checker
	// Rooms loads a room's persisted moderation state (settings, keywords,
	// bans) into the Moderation engine the first time a message of the
	// room arrives; wrap it with moderation.Loaded so each room loads
	// once. Nil means rooms start with what the control stream brings.
	Rooms moderation.RoomLoader
	// Seqs continues a room's seq when this worker first sees it. Nil means
	// rooms start at seq 1 in a fresh process.
	Seqs SeqSource
	// SeqGroup is the consumer group that copies the accepted stream into
	// the store behind Seqs (historywriter.Writer's group): on takeover, the
	// accepted records from its committed offset on are read for seqs
	// (see seq.go). Zero value means "history".
	SeqGroup string
	// ScanWindow is the least number of accepted records read per
	// partition on takeover, for dedupe. Zero value means 4096.
	ScanWindow int64
	// DedupeTTL is how long an accepted message id is remembered, so a
	// retry gets the same ack. Zero value means 10 minutes.
	DedupeTTL time.Duration
	// DedupeMax bounds remembered accepted and held ids. Zero value means
	// 1,000,000.
	DedupeMax int
	// DedupeRejectMax bounds remembered rejects, kept apart from accepted
	// ids so that rejects never push them out. Zero value means 250,000.
	DedupeRejectMax int
	// RejectsPerUser bounds the rejects remembered for one user within
	// DedupeTTL (in this worker's memory and, through it, in Dedupe): a
	// reject beyond it is answered and not remembered, so a retry of that
	// send may be decided again. Zero value means 1024.
	RejectsPerUser int
	// Dedupe keeps accepted message ids (and their seqs) for DedupeTTL
	// across workers and restarts: a retry that arrives after its
	// partition changed owner, later than the takeover scan reaches, is
	// still answered with its first seq. Nil means only this worker's
	// memory and the takeover scan (ScanWindow) remember ids. While it
	// fails, logic goes on with those, and writes what the store missed
	// once it answers again.
	Dedupe presence.Dedupe
	// ID names this worker in the fence markers it writes (for people
	// reading the log). Zero value means host name and pid.
	ID string
	// Logger receives logs. Zero value means slog.Default().
	Logger *slog.Logger
	// Registerer receives metrics. Nil means they are not registered.
	Registerer prometheus.Registerer
	// Verdicts keeps counts of the moderation verdicts this worker
	// decides (every one but a plain accept), per room, minute, action
	// and rule, for the stream analytics. Nil means they are not kept.
	Verdicts history.VerdictLog
	// VerdictFlush is how often counts are written to Verdicts. Zero
	// value means 5 s.
	VerdictFlush time.Duration
}

// Logic is one logic worker.
type Logic struct {
	cfg Config
	// engine is cfg.Moderation when it is a *moderation.Engine: the
	// control stream and Rooms update it. Nil otherwise.
	engine *moderation.Engine
	m      *metrics
	seqs   map[string]uint64 // room → last adopted seq; owned by Run's goroutine
	// pr reads accepted partitions on takeover; pw writes them; prover
	// asks the ingest group who owns a partition (nil: the consumer
	// cannot be asked).
	pr     bus.PartitionReader
	pw     bus.PartitionWriter
	prover bus.Prover
	// claims and floor are the takeover state of the current generation
	// (claim.go, seq.go); owned by Run's goroutine.
	claims map[int]*claim    // ingest partition → claim on its accepted partition
	floor  map[string]uint64 // room → highest seq seen in the claimed tails
	// inSeen maps, per ingest partition, the ingest offsets of accepted
	// records without a message id found by the takeover scan to their
	// seq: a redelivered send without an id is recognised by its offset.
	inSeen   map[int]map[int64]uint64
	scanRecs prometheus.Counter
	dedupe   *dedupe
	repPub   bus.Publisher
	// verdicts keeps moderation verdicts not announced yet, or announced
	// only as unavailable, by send (sendKey): a record decided again
	// (its write was fenced, or its commit refused, while the worker kept
	// the partition), and the retry of a send answered unavailable after
	// moderation saw it, get the same verdict, not a second one from the
	// state the first changed (rate limits, the duplicate window). Owned
	// by Run's goroutine.
	verdicts map[recordKey]moderation.Verdict
	// rewrites carries dedupe store writes that failed to runRewrites.
	rewrites chan []durableWrite
	ctlPub   bus.Publisher
	vc       *verdictCounter
}

// New returns a logic worker.
func New(cfg Config) (*Logic, error) {
	if cfg.Bus == nil {
		return nil, errors.New("logic: Config.Bus is required")
	}
	if cfg.Moderation == nil {
		return nil, errors.New("logic: Config.Moderation is required")
	}
	if cfg.Group == "" {
		cfg.Group = "logic"
	}
	if cfg.DedupeTTL == 0 {
		cfg.DedupeTTL = 10 * time.Minute
	}
	if cfg.DedupeMax <= 0 {
		cfg.DedupeMax = 1_000_000
	}
	if cfg.DedupeRejectMax <= 0 {
		cfg.DedupeRejectMax = 250_000
	}
	if cfg.RejectsPerUser <= 0 {
		cfg.RejectsPerUser = 1024
	}
	if cfg.SeqGroup == "" {
		cfg.SeqGroup = "history"
	}
	if cfg.ScanWindow <= 0 {
		cfg.ScanWindow = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.VerdictFlush <= 0 {
		cfg.VerdictFlush = 5 * time.Second
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	pr, ok := cfg.Bus.(bus.PartitionReader)
	pw, ok2 := cfg.Bus.(bus.PartitionWriter)
	if !ok || !ok2 {
		return nil, ErrNoFencing
	}
	engine, _ := cfg.Moderation.(*moderation.Engine)
	return &Logic{
		cfg:      cfg,
		engine:   engine,
		m:        newMetrics(cfg.Registerer),
		seqs:     make(map[string]uint64),
		pr:       pr,
		pw:       pw,
		claims:   make(map[int]*claim),
		inSeen:   make(map[int]map[int64]uint64),
		rewrites: make(chan []durableWrite, 1024),
		verdicts: make(map[recordKey]moderation.Verdict),
		floor:    make(map[string]uint64),
		scanRecs: newScanCounter(cfg.Registerer),
		dedupe:   newDedupe(cfg.DedupeMax, cfg.DedupeRejectMax, cfg.RejectsPerUser, cfg.DedupeTTL),
		repPub:   cfg.Bus.Publisher(bus.StreamReply),
		ctlPub:   cfg.Bus.Publisher(bus.StreamControl),
		vc:       newVerdictCounter(),
	}, nil
}

// ErrNoFencing is returned by New for a bus that cannot read and write
// single partitions (bus.PartitionReader and bus.PartitionWriter), which
// fencing needs.
var ErrNoFencing = errors.New("logic: the bus must implement bus.PartitionReader and bus.PartitionWriter")

// Consumes names the stream and consumer group the worker reads its
// sends from (an App's drain waits for the group's commits).
func (l *Logic) Consumes() (stream, group string) { return bus.StreamIngest, l.cfg.Group }

// Run consumes ingest until ctx is done. It returns nil on ctx cancellation.
func (l *Logic) Run(ctx context.Context) error {
	defer l.startBackground(ctx)()
	if err := l.checkPartitions(ctx); err != nil {
		return err
	}
	c, err := l.cfg.Bus.Consumer(bus.StreamIngest, bus.ConsumerOptions{Group: l.cfg.Group})
	if err != nil {
		return err
	}
	defer c.Close()
	l.prover, _ = c.(bus.Prover)
	gen := int64(-1)
	var redo []bus.Record // records of partitions to decide again, before fetching more
	for {
		recs := redo
		if redo = nil; len(recs) == 0 {
			if recs, err = l.fetch(ctx, c, &gen); err != nil {
				return unlessDone(ctx, err)
			}
		}
		if err := l.claimAll(ctx, l.dropLost(recs)); err != nil {
			return unlessDone(ctx, err)
		}
		if recs = l.dropLost(recs); len(recs) == 0 {
			continue
		}
		outs, err := l.process(ctx, recs)
		if err != nil {
			return unlessDone(ctx, err)
		}
		var commit []bus.Record
		commit, redo = l.splitRedo(recs)
		committed, err := l.commit(ctx, c, commit)
		if err != nil {
			return nil // ctx ended
		}
		l.answer(ctx, outs, committed)
	}
}

// unlessDone returns err, or nil when ctx ended (Run's error on
// cancellation).
func unlessDone(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// startBackground starts Run's helper goroutines: the verdict writer, the
// moderation control reader and the dedupe rewriter, each when configured.
// The returned func stops the verdict writer and waits for it; the others
// end with ctx.
func (l *Logic) startBackground(ctx context.Context) (stop func()) {
	stop = func() {}
	if l.cfg.Verdicts != nil {
		vctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.runVerdicts(vctx)
		}()
		stop = func() {
			cancel()
			<-done
		}
	}
	if l.engine != nil {
		go l.runControl(ctx)
	}
	if l.cfg.Dedupe != nil {
		go l.runRewrites(ctx)
	}
	return stop
}

// fetch reads the next records of c. When the group generation changed
// since *gen (partitions may have moved: rooms this worker owned may have
// advanced elsewhere, and held messages been decided), it resets the
// worker's state, so each partition is claimed again before its records
// are decided and seqs and ids are reloaded on first use.
func (l *Logic) fetch(ctx context.Context, c bus.Consumer, gen *int64) ([]bus.Record, error) {
	recs, err := c.Fetch(ctx)
	if err != nil {
		return nil, err
	}
	if rb, ok := c.(bus.Rebalancer); ok {
		if g := rb.Generation(); g != *gen {
			*gen = g
			l.reset()
		}
	}
	return recs, nil
}

// splitRedo sorts a processed batch's records: those of partitions still
// held are committed; those of partitions fenced but still this worker's
// are decided again (redo, and their claims dropped so they are claimed
// anew); those of lost partitions are left to their new owner.
func (l *Logic) splitRedo(recs []bus.Record) (commit, redo []bus.Record) {
	for _, r := range recs {
		switch cl := l.claims[r.Partition]; {
		case cl == nil || cl.lost:
		case cl.redo:
			redo = append(redo, r)
		default:
			commit = append(commit, r)
		}
	}
	for p, cl := range l.claims {
		if cl.redo {
			delete(l.claims, p)
		}
	}
	return commit, redo
}

// commit commits recs' offsets. A refused commit means the group moved
// some partitions meanwhile (committed false); any other failure is
// retried, since the same worker goes on. It returns an error only when
// ctx ended.
func (l *Logic) commit(ctx context.Context, c bus.Consumer, recs []bus.Record) (committed bool, err error) {
	committed = true
	err = l.retry(ctx, "committing ingest offsets", func() error {
		err := c.Commit(ctx, recs...)
		if errors.Is(err, bus.ErrNotOwner) {
			committed = false
			return nil
		}
		return err
	})
	return committed, err
}

// reset forgets what the worker knew of its partitions (a new generation):
// seqs and claims are read again on takeover. Accepted ids stay: the
// takeover scan reads only ScanWindow records before the group's committed
// offset, so after two generations in a row (a worker joins, then leaves)
// an id accepted before the first would otherwise be forgotten without a
// Dedupe store, and its retry sequenced twice.
func (l *Logic) reset() {
	clear(l.seqs)
	clear(l.claims)
	clear(l.floor)
	clear(l.inSeen)
	l.dedupe.keepAccepted()
}

// outcome is the decision about one ingest record.
type outcome struct {
	in    bus.Ingest
	part  int   // ingest partition
	off   int64 // ingest offset
	reply bus.Reply
	msg   *protocol.Message // accepted
	held  *protocol.Message
	dup   bool
}

// process decides one batch and appends its accepted messages (steps 2–4
// of the package comment). It returns the outcomes to announce; outcomes
// of partitions lost meanwhile are left out. It returns an error only when
// ctx ended before the accepted messages were written.
func (l *Logic) process(ctx context.Context, recs []bus.Record) ([]outcome, error) {
	now := time.Now()
	outs := l.decideAll(ctx, recs, now)
	if err := l.appendAccepted(ctx, outs); err != nil {
		return nil, err
	}
	return l.remember(ctx, outs, now), nil
}

// decideAll decodes recs and decides each send: answered from this
// batch, from dedupe, unavailable (a retry dedupe could not look up), or
// by decide. Malformed records are dropped.
func (l *Logic) decideAll(ctx context.Context, recs []bus.Record, now time.Time) []outcome {
	looked := l.lookupDurable(ctx, recs, now)
	outs := make([]outcome, 0, len(recs))
	next := make(map[string]uint64) // tentative seqs of this batch
	inBatch := make(map[string]int) // dedupe key → index in outs
	for _, rec := range recs {
		var in bus.Ingest
		if err := bus.Unmarshal(rec.Value, &in); err != nil || !protocol.ValidRoom(in.Room) {
			l.cfg.Logger.Warn("logic: dropping malformed ingest record", "partition", rec.Partition, "offset", rec.Offset)
			continue
		}
		l.m.in.Inc()
		o := outcome{in: in, part: rec.Partition, off: rec.Offset,
			reply: bus.Reply{Gateway: in.Gateway, Conn: in.Conn, ID: in.ID, Room: in.Room}}
		key := dedupeKey(in)
		if seq, ok := l.inSeen[rec.Partition][rec.Offset]; ok && in.ID == "" {
			o.reply.Seq, o.dup = seq, true // a redelivered send without an id, accepted before
			l.m.dups.Inc()
			outs = append(outs, o)
			continue
		}
		if in.ID != "" {
			if i, ok := inBatch[key]; ok {
				o.reply.Seq, o.reply.Held, o.dup = outs[i].reply.Seq, outs[i].reply.Held, true
				o.reply.Code, o.reply.Message, o.reply.RetryAfterMs = outs[i].reply.Code, outs[i].reply.Message, outs[i].reply.RetryAfterMs
				outs = append(outs, o)
				continue
			}
			// A trusted re-send of a held message (a moderator approved
			// it) is decided anew instead of answered "held" again.
			if prev, ok := l.dedupe.get(key, now); ok && !(prev.seq == 0 && in.Trusted) {
				o.reply.Seq, o.reply.Held, o.dup = prev.seq, prev.held, true
				if prev.rej != nil {
					prev.rej.reply(&o.reply, now)
				}
				l.m.dups.Inc()
				outs = append(outs, o)
				continue
			}
			if !looked && in.Retry {
				// A retry of an id this worker does not know, and the
				// dedupe store did not answer: it may have been accepted
				// before the last takeover. Never decide it twice; the
				// sender retries once the store is back.
				o.reply.Code, o.reply.Message, o.reply.RetryAfterMs = protocol.CodeUnavailable, "dedupe store unavailable", 1000
				l.m.rejected.WithLabelValues(string(protocol.CodeUnavailable)).Inc()
				outs = append(outs, o)
				continue
			}
		}
		l.decide(ctx, &o, now, next)
		if in.ID != "" {
			inBatch[key] = len(outs)
		}
		outs = append(outs, o)
	}
	return outs
}

// appendAccepted appends each partition's accepted messages of outs to
// the accepted stream under the partition's claim.
func (l *Logic) appendAccepted(ctx context.Context, outs []outcome) error {
	byPart := make(map[int][]bus.Record)
	for i := range outs {
		if m := outs[i].msg; m != nil && !outs[i].dup {
			v, _ := bus.Marshal(acceptedValue{Message: *m, In: &outs[i].off, F: l.claims[outs[i].part].id})
			byPart[outs[i].part] = append(byPart[outs[i].part], bus.Record{Key: m.Room, Value: v})
		}
	}
	// Partitions are independent (each has its own claim): write them at
	// once, so a batch over many partitions costs one round trip.
	errs := make(chan error, len(byPart))
	for p, recs := range byPart {
		go func() {
			_, err := l.appendFenced(ctx, p, l.claims[p], recs)
			errs <- err
		}()
	}
	var appendErr error
	for range byPart {
		if err := <-errs; err != nil {
			appendErr = err
		}
	}
	return appendErr
}

// remember records what outs decided, for the outcomes whose partition
// this worker still holds: room seqs, acks and rejects in dedupe (and
// the durable dedupe store). It returns those outcomes.
func (l *Logic) remember(ctx context.Context, outs []outcome, now time.Time) []outcome {
	kept := outs[:0]
	var stored []string
	var storedVals [][]byte
	for i := range outs {
		o := &outs[i]
		if cl := l.claims[o.part]; cl.lost || cl.redo {
			continue // decided again, by this worker or the new owner
		}
		if o.msg != nil && !o.dup {
			if seq := o.msg.Seq; seq > l.seqs[o.in.Room] {
				l.seqs[o.in.Room] = seq
			}
			if o.in.ID != "" {
				l.dedupe.put(dedupeKey(o.in), o.in.UID, dedupeEntry{seq: o.reply.Seq}, now)
				stored = append(stored, dedupeKey(o.in))
				storedVals = append(storedVals, strconv.AppendUint(nil, o.reply.Seq, 10))
			}
		}
		// A reject is remembered before it is announced, like an ack: a
		// retry that reaches this worker or the partition's next owner
		// gets the same reject, also when this batch's commit then fails
		// (the record is decided again, and answered from dedupe). Only
		// RejectsPerUser of one user's: a flood of rejected sends takes
		// a bounded share of memory and of the store.
		if rej := rejectionOf(o.reply, now); rej != nil && !o.dup && o.in.ID != "" {
			if l.dedupe.put(dedupeKey(o.in), o.in.UID, dedupeEntry{rej: rej}, now) {
				v, _ := bus.Marshal(rej)
				stored = append(stored, rejKey(dedupeKey(o.in)))
				storedVals = append(storedVals, v)
			} else {
				l.m.rejectsForgotten.Inc()
			}
		}
		kept = append(kept, *o)
	}
	l.storeDurable(ctx, stored, storedVals)
	return kept
}

// answer publishes held-message events and replies for outs (step 6):
// acks always, held answers and rejects only when the batch's ingest
// records were committed. Runs on Run's goroutine.
func (l *Logic) answer(ctx context.Context, outs []outcome, committed bool) {
	now := time.Now()
	var replies, control []bus.Record
	var held []string
	for i := range outs {
		o := &outs[i]
		final := o.reply.Seq != 0 // an ack stands whatever happens to the commit
		if !final && !committed {
			l.m.unannounced.Inc()
			continue // decided again, by the partition's next owner or this worker
		}
		if o.reply.Code != protocol.CodeUnavailable {
			// Final: the verdict is not needed again. After unavailable
			// the sender retries with the same id (a new record), and
			// the retry is decided with the verdict moderation gave.
			delete(l.verdicts, sendKey(o))
		}
		if o.held != nil && !o.dup {
			if o.in.ID != "" {
				l.dedupe.put(dedupeKey(o.in), o.in.UID, dedupeEntry{held: true}, now)
				held = append(held, heldKey(dedupeKey(o.in)))
			}
			data, _ := bus.Marshal(heldEvent{Message: *o.held, Gateway: o.in.Gateway, Conn: o.in.Conn, Rule: o.reply.Message})
			v, _ := bus.Marshal(bus.Control{Op: bus.ControlHeld, Room: o.in.Room, UID: o.in.UID, TS: now.UnixMilli(), Data: data})
			control = append(control, bus.Record{Key: o.in.Room, Value: v})
			o.reply.Message = ""
		}
		if o.in.Gateway != "" {
			v, _ := bus.Marshal(o.reply)
			replies = append(replies, bus.Record{Key: o.in.Gateway, Value: v})
		}
	}
	l.storeDurable(ctx, held, nil)
	if len(control) > 0 {
		if err := l.retry(ctx, "publishing held messages", func() error {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return l.ctlPub.Publish(pctx, control...)
		}); err != nil {
			return
		}
	}
	if len(replies) > 0 {
		// Best effort: a sender that misses its reply retries with the same
		// id and is answered from dedupe.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := l.repPub.Publish(pctx, replies...); err != nil {
			l.cfg.Logger.Warn("logic: publishing replies failed", "n", len(replies), "err", err)
		}
		cancel()
	}
}

// recordKey names a send: by room, uid and message id (id, the dedupeKey)
// when it has one, so a retry of it (a new ingest record) has the same
// key; else by its ingest partition and offset.
type recordKey struct {
	part int
	off  int64
	id   string
}

// sendKey is o's key in Logic.verdicts.
func sendKey(o *outcome) recordKey {
	if o.in.ID != "" {
		return recordKey{part: -1, id: dedupeKey(o.in)}
	}
	return recordKey{part: o.part, off: o.off}
}

// maxVerdicts bounds Logic.verdicts.
const maxVerdicts = 1 << 16

// heldEvent is the Data of a ControlHeld event: the message as it would be
// published, and where to send the ack when a moderator approves it.
type heldEvent struct {
	Message protocol.Message `json:"msg"`
	Gateway string           `json:"gw,omitempty"`
	Conn    uint64           `json:"conn,omitempty"`
	Rule    string           `json:"rule,omitempty"`
}

// decide fills o with the verdict for one new message.
//
// The room's seq is established first: when the SeqSource does not answer,
// the send is answered unavailable before moderation saw it, so the
// sender's retry (same id, same text) is decided as if it were the first
// send, not rejected as a duplicate of itself or charged twice against
// the rate limits.
func (l *Logic) decide(ctx context.Context, o *outcome, now time.Time, next map[string]uint64) {
	in := o.in
	text := in.Text
	seq, ok := next[in.Room]
	if !ok {
		var err error
		if seq, err = l.lastSeq(ctx, in.Room); err != nil {
			// Never guess a seq: the sender retries with the same id.
			o.reply.Code = protocol.CodeUnavailable
			o.reply.RetryAfterMs = 1000
			l.m.rejected.WithLabelValues(string(protocol.CodeUnavailable)).Inc()
			return
		}
	}
	if l.cfg.Rooms != nil && l.engine != nil {
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		_ = l.cfg.Rooms.LoadRoom(lctx, in.Room, l.engine)
		cancel()
	}
	if in.Mode != protocol.ModeScroll || in.Size != protocol.SizeNormal {
		if dc, ok := l.cfg.Moderation.(DisplayChecker); ok {
			v := dc.CheckDisplay(moderation.DisplayInput{Room: in.Room, Role: in.Role, Kind: in.Kind, Mode: in.Mode, Size: in.Size})
			if v.Action == moderation.Reject {
				o.reply.Code = protocol.Code(v.Code)
				o.reply.Message = v.Rule
				l.m.rejected.WithLabelValues(string(v.Code)).Inc()
				return
			}
		}
	}
	if !in.Trusted {
		rk := sendKey(o)
		v, ok := l.verdicts[rk]
		if !ok {
			v = l.cfg.Moderation.Check(moderation.Input{Room: in.Room, UID: in.UID, Role: in.Role, Text: in.Text, Now: now})
			if len(l.verdicts) >= maxVerdicts {
				clear(l.verdicts) // records that will not come again
			}
			l.verdicts[rk] = v
			if l.cfg.Verdicts != nil {
				l.vc.add(in.Room, now, v)
			}
		}
		switch v.Action {
		case moderation.Reject:
			o.reply.Code = protocol.Code(v.Code)
			o.reply.Message = v.Rule
			if v.RetryAfter > 0 {
				o.reply.RetryAfterMs = int64((v.RetryAfter + time.Millisecond - 1) / time.Millisecond)
			}
			l.m.rejected.WithLabelValues(string(v.Code)).Inc()
			return
		case moderation.Hold:
			o.held = &protocol.Message{Room: in.Room, ID: in.ID, UID: in.UID, Name: in.Name, Text: v.Text,
				TS: now.UnixMilli(), Kind: in.Kind, Role: roleTag(in.Role), Color: in.Color, Mode: in.Mode, Size: in.Size}
			o.reply.Held = true
			o.reply.Message = v.Rule
			l.m.held.Inc()
			return
		case moderation.Mask:
			text = v.Text
		}
	}
	seq++
	next[in.Room] = seq
	id := in.ID
	if in.GeneratedID {
		id = "" // see bus.Ingest.GeneratedID
	}
	o.msg = &protocol.Message{Room: in.Room, Seq: seq, ID: id, UID: in.UID, Name: in.Name, Text: text,
		TS: now.UnixMilli(), Kind: in.Kind, Role: roleTag(in.Role), Color: in.Color, Mode: in.Mode, Size: in.Size}
	o.reply.Seq = seq
	l.m.accepted.Inc()
}

// lastSeq returns the room's last adopted seq: the first time, the larger
// of the SeqSource's answer and the seq floor read on takeover. It fails
// when the SeqSource does not answer; the caller must not guess.
func (l *Logic) lastSeq(ctx context.Context, room string) (uint64, error) {
	if seq, ok := l.seqs[room]; ok {
		return max(seq, l.floor[room]), nil // a claim again may have raised the floor
	}
	seq := l.floor[room]
	if l.cfg.Seqs != nil {
		for attempt := 0; ; attempt++ {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			s, err := l.cfg.Seqs.LastSeq(qctx, room)
			cancel()
			if err == nil {
				seq = max(seq, s)
				break
			}
			if ctx.Err() != nil || attempt == 3 {
				l.cfg.Logger.Error("logic: cannot learn the room's last seq; answering unavailable", "room", room, "err", err)
				return 0, err
			}
			time.Sleep(time.Duration(100<<attempt) * time.Millisecond)
		}
	}
	l.seqs[room] = seq
	return seq, nil
}

// roleTag is the role shown on a message: empty for plain viewers.
func roleTag(role string) string {
	if role == "viewer" {
		return ""
	}
	return role
}

func dedupeKey(in bus.Ingest) string {
	return in.Room + "\x00" + in.UID + "\x00" + in.ID
}
