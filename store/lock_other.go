//go:build !unix

package store

import (
	"os"
	"time"
)

// lockFile takes no lock where flock(2) does not exist: there, uninstall and migrate
// down cannot tell whether a server is running and proceed as with --force.
func lockFile(path string, mode LockMode, wait time.Duration) (*os.File, error) {
	return nil, nil
}
