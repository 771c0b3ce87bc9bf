package store

import (
	"errors"
	"path/filepath"
	"testing"
)

type rec struct {
	Name string
	N    int
}

func TestDBRoundTrip(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	if err := db.Update(func(tx *Tx) error {
		if err := tx.Put("things", "a", rec{Name: "a", N: 1}); err != nil {
			return err
		}
		return tx.Put("things", "b", rec{Name: "b", N: 2})
	}); err != nil {
		t.Fatal(err)
	}

	var got rec
	if err := db.View(func(tx *Tx) error { return tx.Get("things", "b", &got) }); err != nil {
		t.Fatal(err)
	}
	if got != (rec{Name: "b", N: 2}) {
		t.Fatalf("got %+v", got)
	}

	err = db.View(func(tx *Tx) error { return tx.Get("things", "zzz", &got) })
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing key: got %v, want ErrNotFound", err)
	}
	err = db.View(func(tx *Tx) error { return tx.Get("nobucket", "a", &got) })
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing bucket: got %v, want ErrNotFound", err)
	}

	// A failing transaction leaves nothing behind.
	boom := errors.New("boom")
	err = db.Update(func(tx *Tx) error {
		if err := tx.Put("things", "c", rec{Name: "c"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}

	var ids []string
	if err := db.View(func(tx *Tx) error {
		return tx.ForEach("things", func(id string, _ []byte) error { ids = append(ids, id); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] != "a" || ids[1] != "b" {
		t.Fatalf("ids after rollback = %v, want [a b]", ids)
	}

	if err := db.Update(func(tx *Tx) error { return tx.Delete("things", "a") }); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *Tx) error { return tx.Delete("things", "a") }); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestLoadAllSkipsCorruptRecords(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *Tx) error {
		if err := tx.Put("things", "a", rec{Name: "a", N: 1}); err != nil {
			return err
		}
		if err := tx.Put("things", "b", rec{Name: "not-b"}); err != nil {
			return err
		}
		return tx.tx.Bucket([]byte("things")).Put([]byte("c"), []byte("{broken"))
	}); err != nil {
		t.Fatal(err)
	}
	var skipped []string
	var got map[string]*rec
	err = db.View(func(tx *Tx) error {
		var err error
		got, err = LoadAll(tx, "things",
			func(id string, v *rec) bool { return v.Name == id },
			func(id string, _ error) { skipped = append(skipped, id) })
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["a"] == nil || got["a"].N != 1 {
		t.Fatalf("loaded %v, want only a", got)
	}
	if len(skipped) != 2 || skipped[0] != "b" || skipped[1] != "c" {
		t.Fatalf("skipped %v, want [b c]", skipped)
	}
}
