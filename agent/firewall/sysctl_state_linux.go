package firewall

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/flatmesh/flatmesh/internal/atomicfile"
)

// sysctlState is what StateFile holds: each sysctl Ensure changed (key
// under /proc/sys) and the value it had before the first change.
type sysctlState struct {
	Before map[string]string `json:"before"`
}

func readSysctlState(path string) (sysctlState, error) {
	st := sysctlState{Before: map[string]string{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("reading firewall state %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return sysctlState{Before: map[string]string{}}, fmt.Errorf("parsing firewall state %s: %w", path, err)
	}
	if st.Before == nil {
		st.Before = map[string]string{}
	}
	return st, nil
}

// changeSysctl sets key to value in the namespace; when it changes the
// value and o.StateFile is set, it records the old value first (once: a
// second run keeps the value from before the first).
func changeSysctl(path string, o Options, key, value string) error {
	cur, err := getSysctl(path, key)
	if err != nil {
		return err
	}
	if cur == value {
		return nil
	}
	if o.StateFile != "" {
		st, err := readSysctlState(o.StateFile)
		if err != nil {
			return err
		}
		if _, ok := st.Before[key]; !ok {
			st.Before[key] = cur
			b, _ := json.Marshal(st)
			if err := atomicfile.Write(o.StateFile, b, atomicfile.Options{}); err != nil {
				return fmt.Errorf("recording sysctl %s before changing it: %w", dotted(key), err)
			}
		}
	}
	return setSysctl(path, key, value)
}

// restoreSysctls puts back what StateFile recorded and removes it.
func restoreSysctls(path string, o Options) error {
	if o.StateFile == "" {
		return nil
	}
	st, err := readSysctlState(o.StateFile)
	if err != nil {
		return err
	}
	for key, v := range st.Before {
		if err := setSysctl(path, key, v); err != nil {
			return err
		}
		o.logger().Info("sysctl restored", "key", dotted(key), "value", v)
	}
	if err := os.Remove(o.StateFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing firewall state %s: %w", o.StateFile, err)
	}
	return nil
}
