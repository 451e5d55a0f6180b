package settlement

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/qinba/qinba/auth"
	"github.com/qinba/qinba/internal/apperr"
)

// Settle requests that arrive while others are being settled are settled
// together: a group of them in one transaction of two round trips (group
// commit). A request arriving at an idle service is a group of one and goes
// at once; under load, requests queue while the groups in flight finish,
// and the next group takes them all. Each request still gets its own
// settlement, journal entry, idempotency record and audit entry, and its
// own answer; what the requests share is the transaction's begin and
// commit, its round trips and its set-wise reads. A group never holds two
// requests for one bill, one idempotency key or one person-year: the later
// one waits for the next group, so the settlements of one person are
// applied one after the other, each reading what the one before wrote.
// When a group fails as a whole (a database error), each of its requests is
// settled again in a group of its own, so one request's failure is never
// another's.
const (
	groupLeaders = 2  // groups in flight at once (each on its own connection)
	groupMax     = 64 // requests in one group
)

// settleOp is one settle request on its way through a group.
type settleOp struct {
	ctx     context.Context
	p       *auth.Principal
	billID  int64
	version int
	k       *idemKey
	alone   bool // settle it in a group of its own

	out     *Settled
	err     error
	done    chan struct{} // closed when out and err are set
	lead    chan struct{} // the lead is handed to this request
	leading bool          // guarded by settleQueue.mu
}

// settleQueue is where requests wait for a group.
type settleQueue struct {
	mu      sync.Mutex
	ops     []*settleOp
	leaders int // requests running groups
}

// settleGrouped settles op in a group and returns when it is answered. The
// groups are run by the requests' own goroutines: a request that finds
// fewer than groupLeaders groups running leads, running groups until its
// own request is answered; then it hands the lead to the oldest waiting
// request, if any.
func (s *Service) settleGrouped(op *settleOp) {
	op.done, op.lead = make(chan struct{}), make(chan struct{}, 1)
	q := &s.queue
	q.mu.Lock()
	q.ops = append(q.ops, op)
	if q.leaders < groupLeaders {
		q.leaders++
		op.leading = true
	}
	q.mu.Unlock()
	for {
		q.mu.Lock()
		leading := op.leading
		q.mu.Unlock()
		if leading {
			if s.leadGroups(op) {
				return
			}
			continue // it stopped leading: wait
		}
		select {
		case <-op.done:
			q.passLead(op) // in case it was handed the lead meanwhile
			return
		case <-op.lead:
		}
	}
}

// leadGroups runs groups until op is answered (true), or until the queue
// is empty while op is in another leader's group (false: op no longer
// leads, and waits; it may be deferred and handed the lead again).
func (s *Service) leadGroups(op *settleOp) bool {
	q := &s.queue
	for {
		select {
		case <-op.done:
			q.passLead(op)
			return true
		default:
		}
		q.mu.Lock()
		group := q.take()
		q.mu.Unlock()
		if group == nil {
			q.passLead(op)
			return false
		}
		deferred := s.runGroup(op.ctx, group)
		q.mu.Lock()
		q.ops = append(deferred, q.ops...)
		q.mu.Unlock()
	}
}

// passLead ends op's lead (if it has it): the oldest waiting request that
// does not lead takes it over, or there is one leader less.
func (q *settleQueue) passLead(op *settleOp) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !op.leading {
		return
	}
	op.leading = false
	for _, o := range q.ops {
		if !o.leading {
			o.leading = true
			select {
			case o.lead <- struct{}{}:
			default: // a request that is not leading has no signal pending
			}
			return
		}
	}
	q.leaders--
}

// take removes the next group from the queue (nil when it is empty): a
// request to settle alone, or every request up to groupMax. Called with
// q.mu held.
func (q *settleQueue) take() []*settleOp {
	if len(q.ops) == 0 {
		return nil
	}
	n := 1
	if !q.ops[0].alone {
		for n < len(q.ops) && n < groupMax && !q.ops[n].alone {
			n++
		}
	}
	group := make([]*settleOp, n)
	copy(group, q.ops)
	q.ops = q.ops[n:]
	return group
}

// answer gives op its result.
func (op *settleOp) answer(out *Settled, err error) {
	op.out, op.err = out, err
	close(op.done)
}

// groupKey is an idempotency key.
type groupKey struct {
	user int64
	key  string
}

// groupAnswer is what a group's transaction decided for one request.
type groupAnswer struct {
	out    *Settled
	err    error
	replay int64 // answered with this earlier settlement, read after the transaction
	later  bool  // wait for the next group
}

// runGroup settles group in one transaction, answers its requests and
// returns those that must wait for a later group. ctx is the leading
// request's; the group's work is not cancelled with it.
func (s *Service) runGroup(lead context.Context, group []*settleOp) (deferred []*settleOp) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(lead), time.Minute)
	defer cancel()
	// One request per bill and per key.
	var ops []*settleOp
	bills := map[int64]bool{}
	keys := map[groupKey]bool{}
	for _, op := range group {
		var k groupKey
		if op.k != nil {
			k = groupKey{op.k.user, op.k.key}
		}
		if bills[op.billID] || op.k != nil && keys[k] {
			deferred = append(deferred, op)
			continue
		}
		bills[op.billID] = true
		if op.k != nil {
			keys[k] = true
		}
		ops = append(ops, op)
	}
	answers, err := s.groupOnConn(ctx, ops)
	if err != nil {
		// The group failed as a whole: nothing of it was written.
		for _, op := range ops {
			if op.alone {
				op.answer(nil, err)
			} else {
				op.alone = true
				deferred = append(deferred, op)
			}
		}
		return deferred
	}
	for i, op := range ops {
		switch a := answers[i]; {
		case a.later:
			deferred = append(deferred, op)
		case a.replay != 0:
			op.answer(s.replayed(ctx, s.pool, a.replay))
		default:
			op.answer(a.out, a.err)
		}
	}
	return deferred
}

// groupOnConn runs groupTx on a connection of its own; whatever goes wrong
// ends in a rollback.
func (s *Service) groupOnConn(ctx context.Context, ops []*settleOp) ([]groupAnswer, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	answers, err := s.groupTx(ctx, conn, ops)
	if pc := conn.Conn().PgConn(); !pc.IsClosed() && pc.TxStatus() != 'I' {
		if _, rerr := conn.Exec(ctx, "rollback"); rerr != nil {
			_ = conn.Conn().Close(ctx) // never hand an open transaction back to the pool
		}
		if err == nil {
			err = errors.New("settlement: transaction not committed")
		}
	}
	if err != nil {
		return nil, err
	}
	for _, a := range answers {
		if a.out != nil {
			s.markStored(a.out)
		}
	}
	return answers, nil
}

// groupTx settles ops on conn in one transaction: the reads in one round
// trip (BEGIN first), the writes in a second (COMMIT last). It returns
// each request's answer: its settlement, its refusal, the settlement an
// earlier request with its key wrote, or to wait for a later group
// (another request of the group has its person-year). An error fails the
// group as a whole; the caller rolls back.
func (s *Service) groupTx(ctx context.Context, conn txConn, ops []*settleOp) ([]groupAnswer, error) {
	ids := make([]int64, len(ops))
	var users []int64
	var keys []string
	for i, op := range ops {
		ids[i] = op.billID
		if op.k != nil {
			users, keys = append(users, op.k.user), append(keys, op.k.key)
		}
	}
	// The locking order of everything that posts to the books: the
	// facilities' clearing locks (shared, in code order; a clearing run
	// takes them exclusive), the bills (in id order), then the
	// accumulators (in key order, by queueWaveReads). The idempotency
	// records are read once the bills are locked: a request repeated while
	// the first is still running waits for it on the bill's lock and then
	// finds its record.
	b := &pgx.Batch{}
	b.Queue("begin")
	b.Queue(`SELECT ` + planSettings) // before anything that takes an array is planned
	b.Queue(`SELECT pg_advisory_xact_lock_shared($2, hashtext(f))
		FROM (SELECT DISTINCT facility_code AS f FROM bill WHERE id = ANY($1) ORDER BY 1) x`, ids, clearingLockClass)
	b.Queue(`SELECT 1 FROM bill WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids)
	b.Queue(`SELECT i.user_id, i.key, i.operation, i.target_id, i.request_sha256, i.settlement_id
		FROM unnest($1::bigint[], $2::text[]) AS u(user_id, key)
		JOIN settlement_idempotency i ON i.user_id = u.user_id AND i.key = u.key`, users, keys)
	queueWaveReads(b, ids)
	stored := map[groupKey]idemRow{}
	var w *waveData
	err := func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		for range 4 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		var k groupKey
		var r idemRow
		if err := eachRow(br, []any{&k.user, &k.key, &r.op, &r.target, &r.hash, &r.settlement}, func() error {
			stored[k] = r
			return nil
		}); err != nil {
			return err
		}
		var err error
		w, err = readWave(br)
		return err
	}()
	if err != nil {
		return nil, err
	}

	b = &pgx.Batch{}
	answers := make([]groupAnswer, len(ops))
	persons := map[personYear]bool{}
	next := 0 // the next of w.newIDs
	for i, op := range ops {
		a := &answers[i]
		if op.k != nil {
			if a.replay, a.err = op.k.check(stored[groupKey{op.k.user, op.k.key}]); a.err != nil || a.replay != 0 {
				continue
			}
		}
		st, ok := w.states[op.billID]
		if !ok {
			a.err = apperr.E(apperr.NotFound, "bill %d not found", op.billID)
			continue
		}
		py := personYear{st.PersonID, st.Date.Year()}
		if persons[py] {
			a.later = true
			continue
		}
		persons[py] = true
		if a.out, a.err = s.settleRow(op, &st, w, w.newIDs[next], b); a.err == nil {
			next++
		}
	}
	b.Queue("commit")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("write settlements: %w", err)
	}
	return answers, nil
}

// settleRow checks and computes op's settlement of bill st from what the
// group read, and queues its write (with id) on b.
func (s *Service) settleRow(op *settleOp, st *billState, w *waveData, id int64, b *pgx.Batch) (*Settled, error) {
	if op.p != nil {
		if err := s.scope.Check(op.ctx, op.p, auth.DenyNotFound, "bill", strconv.FormatInt(op.billID, 10), st.Facility); err != nil {
			return nil, err
		}
	}
	switch {
	case st.Status == StatusSettled:
		return nil, &apperr.Error{Code: apperr.Conflict, Message: fmt.Sprintf("bill %d is already settled (settlement %d); reverse it before settling it again", op.billID, st.SettlementID),
			Details: map[string]any{"status": st.Status, "settlement_id": st.SettlementID}}
	case op.version != 0 && op.version != st.Version:
		return nil, &apperr.Error{Code: apperr.Conflict, Message: fmt.Sprintf("bill %d is at version %d, not %d: it was corrected; check it again", op.billID, st.Version, op.version),
			Details: map[string]any{"status": st.Status, "version": st.Version}}
	}
	row, _, err := s.settlementOf(st, w, id, s.now().Truncate(time.Microsecond), b)
	if err != nil {
		return nil, err
	}
	row.CreatedBy, row.Idem = userID(op.p), op.k
	res := row.Result
	if row.Audit, err = (auth.Entry{Action: "settle", RecordType: "bill", RecordID: strconv.FormatInt(op.billID, 10),
		Facility: st.Facility, Username: s.actor(op.p), Detail: map[string]any{"settlement_id": id, "person_id": st.PersonID,
			"total": FormatMoney(res.Total), "patient": FormatMoney(res.Patient), "policy": row.PolicyID}}).Row(op.ctx); err != nil {
		return nil, err
	}
	out := &Settled{Settlement: row.view(), policy: [32]byte(row.PolicySHA)}
	if out.Body, err = out.Settlement.encode(); err != nil {
		return nil, err
	}
	row.queueInsert(b) // last: a refused request writes nothing
	return out, nil
}
