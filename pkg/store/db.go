package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DB is the metadata database. Objects are stored as JSON values keyed by ID inside one bucket
// per kind ("images", "layers", "sandboxes", "containers", ...), so a transition that must
// survive a crash is one bbolt transaction.
type DB struct {
	bolt *bolt.DB
}

// Open opens (or creates) the database file at path. A lock timeout keeps a second daemon on the
// same root from hanging forever: bbolt holds an exclusive flock on the file.
func Open(path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create metadata dir: %w", err)
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open metadata database %s: %w", path, err)
	}
	return &DB{bolt: b}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.bolt.Close() }

// Tx is one read-write or read-only transaction.
type Tx struct{ tx *bolt.Tx }

// Update runs fn in a read-write transaction; an error from fn rolls everything back.
func (d *DB) Update(fn func(*Tx) error) error {
	return d.bolt.Update(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// View runs fn in a read-only transaction.
func (d *DB) View(fn func(*Tx) error) error {
	return d.bolt.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// Put stores v as JSON under kind/id.
func (t *Tx) Put(kind, id string, v any) error {
	b, err := t.tx.CreateBucketIfNotExists([]byte(kind))
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", kind, err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", kind, id, err)
	}
	if err := b.Put([]byte(id), data); err != nil {
		return fmt.Errorf("put %s %s: %w", kind, id, err)
	}
	return nil
}

// Get decodes kind/id into v; it returns ErrNotFound when absent.
func (t *Tx) Get(kind, id string, v any) error {
	b := t.tx.Bucket([]byte(kind))
	if b == nil {
		return fmt.Errorf("%s %s: %w", kind, id, ErrNotFound)
	}
	data := b.Get([]byte(id))
	if data == nil {
		return fmt.Errorf("%s %s: %w", kind, id, ErrNotFound)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s %s: %w", kind, id, err)
	}
	return nil
}

// Delete removes kind/id; deleting something absent is not an error.
func (t *Tx) Delete(kind, id string) error {
	b := t.tx.Bucket([]byte(kind))
	if b == nil {
		return nil
	}
	if err := b.Delete([]byte(id)); err != nil {
		return fmt.Errorf("delete %s %s: %w", kind, id, err)
	}
	return nil
}

// ForEach calls fn with every raw JSON value of kind. The value is only valid during fn.
// Decoding is left to the caller so that one corrupt record can be reported and skipped
// instead of making the whole daemon refuse to start.
func (t *Tx) ForEach(kind string, fn func(id string, raw []byte) error) error {
	b := t.tx.Bucket([]byte(kind))
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error { return fn(string(k), v) })
}

// LoadAll decodes every record of kind. A record that does not decode, or that valid rejects,
// is passed to skip and left out: one corrupt record must never keep the daemon from starting.
func LoadAll[T any](tx *Tx, kind string, valid func(id string, v *T) bool, skip func(id string, err error)) (map[string]*T, error) {
	out := map[string]*T{}
	err := tx.ForEach(kind, func(id string, raw []byte) error {
		v := new(T)
		if err := json.Unmarshal(raw, v); err != nil {
			skip(id, fmt.Errorf("decode %s %s: %w", kind, id, err))
			return nil
		}
		if !valid(id, v) {
			skip(id, fmt.Errorf("%s record %s is inconsistent with its key", kind, id))
			return nil
		}
		out[id] = v
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", kind, err)
	}
	return out, nil
}
