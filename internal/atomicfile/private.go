package atomicfile

import (
	"fmt"
	"os"
)

// ReadPrivate reads a secret file (a private key) after checking that only
// its owner can read it: a key readable by the group or by anyone is
// refused with the chmod that fixes it, never silently used.
func ReadPrivate(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o: it must be readable by its owner only (chmod 600 %s)",
			path, st.Mode().Perm(), path)
	}
	return os.ReadFile(path)
}
