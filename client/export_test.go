package client

// ReaderStalled reports whether the client's reader is waiting for s's consumer to
// make room, i.e. has stopped reading the socket.
func ReaderStalled(s *Subscription) bool { return s.stalled.Load() }
