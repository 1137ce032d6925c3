package atomicfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Versioned names the format-version field of a state file and the one
// value this build reads.
type Versioned struct {
	Field string // JSON field holding the version; "version" when empty
	Want  int    // the only version accepted
}

// CorruptError says a state file is not the JSON its reader expects.
type CorruptError struct {
	Path string
	Err  error
}

func (e *CorruptError) Error() string { return fmt.Sprintf("%s is corrupt: %v", e.Path, e.Err) }
func (e *CorruptError) Unwrap() error { return e.Err }

// VersionError says a state file has a format version this build does not read.
type VersionError struct {
	Path       string
	Have, Want int
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("%s has format version %d, this flatmesh reads %d", e.Path, e.Have, e.Want)
}

// ReadVersioned reads the JSON state file at path into v after checking
// that its version field (o.Field) holds o.Want. found is false, with a
// nil error, when the file does not exist. A file that is not JSON gives a
// *CorruptError, a wrong version a *VersionError; v is then untouched.
// Reading never changes the file.
func ReadVersioned(path string, o Versioned, v any) (found bool, err error) {
	if o.Field == "" {
		o.Field = "version"
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", path, err)
	}
	var head map[string]json.RawMessage
	if err := json.Unmarshal(b, &head); err != nil {
		return false, &CorruptError{Path: path, Err: err}
	}
	have := 0
	if raw, ok := head[o.Field]; ok {
		if err := json.Unmarshal(raw, &have); err != nil {
			return false, &CorruptError{Path: path, Err: fmt.Errorf("field %q: %w", o.Field, err)}
		}
	}
	if have != o.Want {
		return false, &VersionError{Path: path, Have: have, Want: o.Want}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, &CorruptError{Path: path, Err: err}
	}
	return true, nil
}
