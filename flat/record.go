package flat

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/flatmesh/flatmesh/internal/atomicfile"
)

// recordVersion is the format version of RecordFile.
const recordVersion = 1

// Record is what RecordFile holds while the bridge is in place: the NIC's
// configuration before the switch-over.
type Record struct {
	Version  int       `json:"version"`
	Iface    string    `json:"iface"`
	Bridge   string    `json:"bridge"`
	Created  time.Time `json:"created"`
	Original Snapshot  `json:"original"`
	// Phase says how far the change got (PhaseSwitching, PhaseSwitched,
	// PhaseRestoring); empty in records of older versions, read as
	// PhaseSwitched.
	Phase string `json:"phase,omitempty"`
	// StepsDone of StepsTotal plan steps were applied (PhaseSwitching).
	StepsDone  int `json:"steps_done,omitempty"`
	StepsTotal int `json:"steps_total,omitempty"`
}

// The phases of a Record. A record in PhaseSwitching or PhaseRestoring was
// left by a run that died in the middle: the next SwitchOver rolls it back
// to Original and starts again.
const (
	PhaseSwitching = "switching" // written before step 1, updated after each step
	PhaseSwitched  = "switched"  // every step applied and the gateway answered
	PhaseRestoring = "restoring" // a rollback or restore is under way
)

// recordPath is the file in dir.
func recordPath(dir string) string { return filepath.Join(dir, RecordFile) }

// writeRecord stores r in dir atomically (temporary file, fsync, rename,
// fsync of the directory), creating dir if needed.
func writeRecord(dir string, r Record) error {
	if dir == "" {
		return errors.New("no state directory to record the original configuration in")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the original configuration: %w", err)
	}
	if err := atomicfile.Write(recordPath(dir), append(b, '\n'), atomicfile.Options{}); err != nil {
		return fmt.Errorf("recording the original configuration: %w", err)
	}
	return nil
}

// ReadRecord loads RecordFile from dir; ok is false when there is none.
func ReadRecord(dir string) (r Record, ok bool, err error) {
	if dir == "" {
		return Record{}, false, errors.New("no state directory given")
	}
	ok, err = atomicfile.ReadVersioned(recordPath(dir), atomicfile.Versioned{Want: recordVersion}, &r)
	var ce *atomicfile.CorruptError
	if errors.As(err, &ce) {
		return Record{}, false, fmt.Errorf("%s is corrupt (%v): restore the NIC by hand or move the file away", recordPath(dir), ce.Err)
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("reading the recorded configuration: %w", err)
	}
	return r, ok, nil
}

// removeRecord deletes RecordFile from dir (absent is fine).
func removeRecord(dir string) error {
	if err := os.Remove(recordPath(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the recorded configuration: %w", err)
	}
	return atomicfile.SyncDir(dir)
}
