//go:build !linux

package ra

// bindToDevice is Linux-only; elsewhere packets are filtered by the
// interface index in their control message.
func bindToDevice(int, string) error { return nil }
