package settlement

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// queued is a db.DBTX that queues every Exec into a pgx.Batch instead of
// running it, so that a helper that writes one row (auth.Audit) can ride
// along with the rest of a settlement's writes in one round trip. Its
// Exec's error is the queueing's (none); the statement's own error comes
// back when the batch is read, failing the transaction.
type queued struct{ b *pgx.Batch }

var errQueued = errors.New("settlement: only Exec can be queued")

func (q queued) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	q.b.Queue(sql, args...)
	return pgconn.CommandTag{}, nil
}

func (q queued) Query(context.Context, string, ...any) (pgx.Rows, error) { return nil, errQueued }

func (q queued) QueryRow(context.Context, string, ...any) pgx.Row { return errRow{} }

func (q queued) CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error) {
	return 0, errQueued
}

func (q queued) SendBatch(context.Context, *pgx.Batch) pgx.BatchResults { return nil }

type errRow struct{}

func (errRow) Scan(...any) error { return errQueued }
