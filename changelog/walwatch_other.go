//go:build !linux

package changelog

// walWatcher is Linux-only; elsewhere the tailer polls at TailerOptions.Poll.
type walWatcher struct{ C chan struct{} }

func watchWAL(string) *walWatcher { return nil }

func (w *walWatcher) Close() {}

func (w *walWatcher) Arm() error { return nil }
